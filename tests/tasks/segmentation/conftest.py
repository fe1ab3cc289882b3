"""A tiny segmentation config for running the real `gspn` command in seconds on CPU."""

from pathlib import Path

import pytest

from tests.config_files import write_config

TINY_BACKBONE = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2}
TINY_HEADS = {"decode_channels": 16, "aux_channels": 8}


def tiny_task(**overrides):
    from gspn.tasks.segmentation import SegmentationTask
    from gspn.tasks.segmentation.procedural import CLASSES, PALETTE

    settings = dict(backbone="gspn_nano", backbone_args=TINY_BACKBONE, num_classes=len(CLASSES),
                    class_names=list(CLASSES), palette=[list(c) for c in PALETTE], **TINY_HEADS)
    return SegmentationTask(**{**settings, **overrides})


def tiny_config(root: Path, **trainer) -> dict:
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "default_root_dir": str(root),
                    "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
                    "logger": False, **trainer},
        "model": {"class_path": "SegmentationTask",
                  "init_args": {"backbone": "gspn_nano", "backbone_args": TINY_BACKBONE, "lr": 1e-3,
                                "schedule": "poly", **TINY_HEADS}},
        "data": {"class_path": "ProceduralScenesDataModule",
                 "init_args": {"num_train": 8, "num_val": 4, "num_test": 4, "image_size": 32, "batch_size": 4,
                               "eval_batch_size": 4}},
    }


@pytest.fixture
def config_file(tmp_path) -> str:
    return write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "run"))
