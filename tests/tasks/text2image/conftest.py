"""Tiny text-to-image settings for running the task and the real `gspn` command in seconds on CPU."""

from pathlib import Path

import pytest
import yaml

from tests.config_files import write_config
from tests.t2i.conftest import offline, one_thread  # noqa: F401  (autouse: no Hub, one torch thread)

CONFIG = Path(__file__).resolve().parents[3] / "tasks" / "text2image" / "configs" / "test_tiny.yaml"


def tiny_config(root: Path, **trainer) -> dict:
    """test_tiny.yaml with its run written under `root`."""
    config = yaml.safe_load(CONFIG.read_text())
    config["trainer"].update(default_root_dir=str(root), **trainer)
    return config


@pytest.fixture(scope="session")
def pipeline_folder(tmp_path_factory) -> Path:
    """A tiny random Stable Diffusion pipeline saved in diffusers' layout, as a `pretrained` folder."""
    from gspn.t2i.tiny import tiny_pipeline
    from gspn.tasks.text2image import CaptionedShapesData

    folder = tmp_path_factory.mktemp("tiny_sd") / "pipeline"
    tiny_pipeline(words=CaptionedShapesData().vocabulary).save_pretrained(folder)
    return folder


@pytest.fixture
def config_file(tmp_path) -> str:
    return write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "run"))
