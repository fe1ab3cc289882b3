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
