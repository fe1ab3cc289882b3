"""The real `gspn` command with the segmentation task on tiny configs, on CPU."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from gspn.cli import cli_main
from gspn.tasks.segmentation.procedural import CLASSES, PALETTE

from .conftest import tiny_config, write_config


def test_fit_links_the_data_and_logs_the_metrics(config_file):
    cli = cli_main(["fit", "--config", config_file])
    assert cli.model.hparams.class_names == list(CLASSES) and cli.model.hparams.num_classes == 5
    assert cli.trainer.checkpoint_callback.monitor == "val_mIoU"
    assert {"train_loss", "train_decode_loss", "train_aux_loss", "val_loss", "val_mIoU", "val_aAcc"} <= set(
        cli.trainer.callback_metrics)
    assert cli.trainer.global_step == 2
    assert (Path(cli.trainer.default_root_dir) / "checkpoints" / "run-1" / "last.ckpt").is_file()
    assert {f"val_IoU/{name}" for name in CLASSES} <= set(cli.trainer.callback_metrics)
    # no logger: the picture of the first validation images (image, truth, prediction) in the run folder
    overlays = Image.open(Path(cli.trainer.default_root_dir) / "overlays" / "step_0000002.png")
    assert overlays.size == (3 * 128, 4 * 128)


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_evaluate(subcommand, config_file):
    cli = cli_main([subcommand, "--config", config_file])
    prefix = "test" if subcommand == "test" else "val"
    metrics = cli.trainer.callback_metrics
    assert {f"{prefix}_mIoU", f"{prefix}_aAcc", f"{prefix}_loss"} <= set(metrics)
    if subcommand == "test":
        assert {f"test_IoU/{name}" for name in CLASSES} <= set(metrics)


def test_predict_writes_palette_labels_and_overlays(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = {"wide": (53, 37), "tall": (33, 61)}  # (width, height), odd and not square
    for name, size in sizes.items():
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(
            folder / f"{name}.jpg")
    config = tiny_config(tmp_path / "run")
    config["data"]["init_args"].update(predict_root=str(folder))  # eval_batch_size 4: sizes must not be batched
    cli_main(["predict", "--config", write_config(tmp_path / "predict.yaml", config)])
    out = tmp_path / "run" / "predictions"
    assert sorted(p.name for p in out.iterdir()) == ["tall.png", "tall_overlay.png", "wide.png", "wide_overlay.png"]
    for name, size in sizes.items():
        with Image.open(out / f"{name}.png") as labels:
            assert labels.mode == "P" and labels.size == size
            assert labels.getpalette()[:15] == [c for colour in PALETTE for c in colour]
            assert np.array(labels).max() < len(CLASSES)
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == size


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Shuffling, dropout, drop path, BatchNorm statistics and the EMA must all replay after a resume."""
    def args(root: Path, callbacks: list[dict]) -> list[str]:
        config = tiny_config(root, max_epochs=2, callbacks=callbacks)
        config["model"]["init_args"].update(ema_decay=0.9, warmup_steps=2)
        config["model"]["init_args"]["backbone_args"]["drop_path_rate"] = 0.2
        return ["fit", "--config", write_config(tmp_path / f"{root.name}-{len(callbacks)}.yaml", config)]

    straight = cli_main(args(tmp_path / "straight", [])).model.state_dict()
    interrupted = cli_main(args(tmp_path / "resumed", [{"class_path": f"{__name__}.StopAfterFirstEpoch"}]))
    assert interrupted.trainer.global_step == 2
    resumed_cli = cli_main(args(tmp_path / "resumed", []) + ["--ckpt_path", "last"])
    assert resumed_cli.trainer.global_step == 4
    resumed = resumed_cli.model.state_dict()
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_one_image_per_batch_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path / "run")
    config["data"]["init_args"]["batch_size"] = 1
    with pytest.raises(ValueError, match="batch_size >= 2"):
        cli_main(["fit", "--config", write_config(tmp_path / "one.yaml", config)])


CONFIGS = Path(__file__).resolve().parents[3] / "tasks" / "segmentation" / "configs"
TRAINER_PRESETS = Path(__file__).resolve().parents[3] / "configs" / "trainer"


@pytest.mark.parametrize("backbone, drop_path", [("gspn_t", 0.2), ("gspn_s", 0.3), ("gspn_b", 0.4), ("gspn2_t", 0.2)])
def test_ade20k_recipes_compose_with_the_ddp_preset(backbone, drop_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(TRAINER_PRESETS / "ddp.yaml"), "--config", str(CONFIGS / "ade20k.yaml"),
                  "--config", str(CONFIGS / f"{backbone}.yaml"), "--data.init_args.root", str(tmp_path),
                  "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for setting in (f"backbone: {backbone}", f"drop_path_rate: {drop_path}", "max_steps: 160000",
                    "val_check_interval: 16000", "warmup_steps: 1500", "sync_batchnorm: true", "lr: 6.0e-05",
                    "schedule: poly", "class_path: gspn.tasks.segmentation.ADE20KDataModule"):
        assert setting in printed, setting
