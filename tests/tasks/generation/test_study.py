"""The many-token study end to end on the tiny config: real `gspn fit` and `gspn validate` runs for
two variants, their table, and a rerun that resumes from the finished runs instead of repeating them."""

import pytest

from gspn.errors import ConfigError
from gspn.tasks.generation import study

from .conftest import TINY_DENOISER, tiny_classifier_checkpoint, tiny_config, write_config


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "unused"))
    monkeypatch.setattr(study, "BASE", [config])
    monkeypatch.setattr(study, "DENOISER", TINY_DENOISER)
    monkeypatch.setattr(study, "IMAGE_SIZE", 16)
    judge = tiny_classifier_checkpoint(tmp_path / "judge.ckpt")
    return ["--root", str(tmp_path / "study"), "--minutes", "1", "--seeds", "0", "--variants", "gspn", "attention",
            "--samples", "8", "--samples-2x", "2", "--judge", judge, "--jobs", "2"]


@pytest.mark.slow
def test_the_study_trains_scores_and_tabulates_every_variant_and_resumes(tiny_study, tmp_path, monkeypatch):
    report = study.main(tiny_study)
    root = tmp_path / "study"
    lines = report.splitlines()
    for variant in ("gspn", "attention"):
        row = next(line for line in lines if line.startswith(f"| {study.VARIANTS[variant][0]} |"))
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert cells[1] == "2"  # the tiny config's max_steps, read from the checkpoint
        assert 0 <= float(cells[4]) <= 100 and 0 <= float(cells[6]) <= 100  # accuracy at 1x and 2x
        assert (root / "grids" / f"{variant}-s0-16px.png").is_file()
        assert (root / "grids" / f"{variant}-s0-32px.png").is_file()
    assert (root / "results.md").read_text().strip() == report.strip()
    assert "mixer" not in (root / "gspn-s0" / "denoiser.yaml").read_text()
    assert "mixer: attention" in (root / "attention-s0" / "denoiser.yaml").read_text()

    def no_more_runs(*args):
        raise AssertionError("a finished run ran again")

    monkeypatch.setattr(study, "run_logged", no_more_runs)
    assert study.main(tiny_study) == report


def test_bad_arguments_are_clear_errors(tiny_study, tmp_path):
    with pytest.raises(ConfigError, match="--judge: .*missing.ckpt is not a file"):
        study.main([*tiny_study, "--judge", str(tmp_path / "missing.ckpt")])
    with pytest.raises(ConfigError, match="--minutes must be positive"):
        study.main([*tiny_study, "--minutes", "0"])
