"""What ships with the package beside the code: type information, the citation, the command's help."""

import subprocess
import sys
from pathlib import Path

import yaml

import gspn

REPO = Path(__file__).resolve().parents[1]


def test_the_package_is_marked_typed():
    assert (Path(gspn.__file__).parent / "py.typed").is_file()
    assert '"gspn": ["py.typed"]' in (REPO / "setup.py").read_text()


def test_the_citation_names_both_papers():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    titles = [reference["title"] for reference in citation["references"]]
    assert titles == ["Parallel Sequence Modeling via Generalized Spatial Propagation Network",
                      "GSPN-2: Efficient Parallel Sequence Modeling"]
    assert all(reference["year"] == 2025 and reference["authors"] for reference in citation["references"])


def test_the_command_help_mentions_the_shipped_configs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gspn", "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": ""}, timeout=120)
    assert result.returncode == 0 and "`gspn configs` lists the configs" in result.stdout


def test_the_installed_diffusers_and_transformers_are_within_the_t2i_pins():
    """gspn.t2i relies on diffusers' module layout (Attention, Transformer2DModel) and its pipelines'
    `encode_prompt`; the pin says which versions are tested, this says the environment is one of them."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    pinned = [Requirement(r) for r in requires("gspn") if 'extra == "t2i"' in r]
    checked = {r.name: r.specifier for r in pinned if r.name in ("diffusers", "transformers")}
    assert set(checked) == {"diffusers", "transformers"} and all(str(s) for s in checked.values())
    for name, specifier in checked.items():
        assert specifier.contains(version(name)), f"{name} {version(name)} is outside the t2i pin {specifier}"
