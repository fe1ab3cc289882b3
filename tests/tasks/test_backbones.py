"""The backbone convention (tasks/backbones.py): a network rebuilt from any task checkpoint that records
backbone, num_classes and backbone_args, without the task that trained it."""

import pytest
import torch

from gspn.errors import CheckpointError
from gspn.tasks.backbones import backbone_from_checkpoint, create_backbone

TINY = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2}


def save_task_checkpoint(path, hyper_parameters: dict, state: dict) -> str:
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "hyper_parameters": hyper_parameters},
               path)
    return str(path)


def test_the_backbone_and_its_weights_come_back_from_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = create_backbone("gspn_nano", 5, TINY).eval()
    settings = {"backbone": "gspn_nano", "num_classes": 5, "backbone_args": TINY, "lr": 1e-3}
    path = save_task_checkpoint(tmp_path / "task.ckpt", settings, trained.state_dict())
    torch.manual_seed(1)
    rebuilt = backbone_from_checkpoint(path, "judge").eval()
    images = torch.rand(2, 3, 32, 32)
    assert rebuilt.num_classes == 5 and torch.equal(rebuilt(images), trained(images))


def test_a_checkpoint_without_a_preset_backbone_or_a_file_is_an_error_naming_the_argument(tmp_path):
    state = create_backbone("gspn_nano", 5, TINY).state_dict()
    path = save_task_checkpoint(tmp_path / "denoiser.ckpt", {"denoiser": "gspn_denoiser_nano4"}, state)
    with pytest.raises(CheckpointError, match=r"judge: .*denoiser.ckpt is not a checkpoint of a task with a preset "
                                              r"backbone"):
        backbone_from_checkpoint(path, "judge")
    with pytest.raises(CheckpointError, match=r"judge: .*missing.ckpt is not a file"):
        backbone_from_checkpoint(tmp_path / "missing.ckpt", "judge")


def test_weights_of_another_size_are_an_error(tmp_path):
    state = create_backbone("gspn_nano", 5, {**TINY, "dims": 16}).state_dict()
    path = save_task_checkpoint(tmp_path / "task.ckpt", {"backbone": "gspn_nano", "num_classes": 5,
                                                         "backbone_args": TINY}, state)
    with pytest.raises(CheckpointError):
        backbone_from_checkpoint(path, "judge")
