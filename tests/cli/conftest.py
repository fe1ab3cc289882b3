"""A tiny classification config for running the real `gspn` command in seconds on CPU."""

from pathlib import Path

import pytest

from tests.config_files import write_config

TINY_MODEL = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2}


def tiny_config(root: Path, **trainer) -> dict:
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "default_root_dir": str(root),
                    "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
                    **trainer},
        "model": {"class_path": "ClassificationTask",
                  "init_args": {"backbone": "gspn_nano", "backbone_args": TINY_MODEL, "lr": 1e-3}},
        "data": {"class_path": "SyntheticShapesDataModule",
                 "init_args": {"num_train": 32, "num_val": 16, "num_test": 16, "image_size": 32, "batch_size": 8}},
    }


@pytest.fixture
def config_file(tmp_path) -> str:
    return write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "run"))
