"""ClassificationTask: a real fit in `bf16-true` precision, pretrained weights that do not fit, and the
removal of an earlier predict's files."""

import pytest
import torch
from lightning.pytorch import Trainer

from gspn.errors import CheckpointError
from gspn.models import create_model
from gspn.tasks.classification import ClassificationTask, SyntheticShapesDataModule

TINY_MODEL = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2}


def test_bf16_true_fit_with_mixup_and_ema(tmp_path):
    task = ClassificationTask(backbone_args=TINY_MODEL, num_classes=SyntheticShapesDataModule.num_classes,
                              mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, ema_decay=0.9)
    data = SyntheticShapesDataModule(num_train=16, num_val=8, num_test=8, batch_size=8)
    trainer = Trainer(accelerator="cpu", precision="bf16-true", max_steps=2, limit_val_batches=1,
                      default_root_dir=tmp_path, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, data)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train_loss"]) and "val_acc1" in trainer.callback_metrics
    assert all(p.dtype == torch.bfloat16 for p in task.parameters())
    assert (tmp_path / "confusion_matrix" / "step_0000002.png").is_file()  # drawn from bf16 outputs too


def test_pretrained_weights_of_another_architecture_are_an_error(tmp_path):
    denoiser = create_model("gspn_denoiser_nano4", num_classes=8, hidden=16, depth=2, d_state=2, mlp_ratio=1.0)
    torch.save({"state_dict": denoiser.state_dict()}, tmp_path / "denoiser.ckpt")
    with pytest.raises(CheckpointError, match="denoiser.ckpt: no tensor matches the model"):
        ClassificationTask(backbone_args=TINY_MODEL, num_classes=8, pretrained=str(tmp_path / "denoiser.ckpt"))


def test_start_prediction_removes_the_predictions_of_an_earlier_run(tmp_path):
    for name in ("predictions.csv", "notes.txt"):
        (tmp_path / name).write_text("stale")
    ClassificationTask(backbone_args=TINY_MODEL, num_classes=8).start_prediction(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
