"""A tiny generation config for running the real `gspn` command in seconds on CPU."""

from pathlib import Path

import lightning
import pytest
import torch

from gspn.tasks.classification import ClassificationTask
from tests.config_files import write_config

TINY_DENOISER = {"hidden": 16, "depth": 2, "d_state": 2, "mlp_ratio": 1.0}


def tiny_config(root: Path, **trainer) -> dict:
    return {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "default_root_dir": str(root),
                    "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
                    "num_sanity_val_steps": 0} | trainer,
        "model": {"class_path": "GenerationTask",
                  "init_args": {"denoiser": "gspn_denoiser_nano4", "denoiser_args": TINY_DENOISER, "lr": 1e-3,
                                "sampler": "ddim", "sampling_steps": 2, "grid_samples": 1, "snr_gamma": 5.0}},
        "data": {"class_path": "SyntheticShapesGenerationData",
                 "init_args": {"num_train": 16, "num_val": 8, "image_size": 16, "batch_size": 8,
                               "samples_per_class": 1, "predict_classes": [0, "ring"]}},
    }


def tiny_classifier_checkpoint(path: Path) -> str:
    """An untrained tiny SyntheticShapes classifier's checkpoint: a judge for the scoring code."""
    task = ClassificationTask(backbone="gspn_nano", backbone_args={"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2},
                              num_classes=8)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return str(path)


@pytest.fixture
def config_file(tmp_path) -> str:
    return write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path / "run"))
