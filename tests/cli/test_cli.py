"""The real `gspn` command on tiny configs, on CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from gspn.cli import cli_main, import_tasks

from .conftest import tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]


def test_every_task_package_is_imported():
    modules = import_tasks()
    assert {"tasks.base", "tasks.classification.module", "tasks.classification.data"} <= set(modules)


def test_importing_gspn_and_its_cli_does_not_need_lightning():
    code = "import sys, gspn, gspn.cli, gspn.models; assert not any(m.startswith('lightning') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_fit_later_config_wins_and_links_num_classes(config_file, tmp_path):
    override = write_config(tmp_path / "override.yaml", {"model": {"init_args": {"lr": 3e-3}}})
    cli = cli_main(["fit", "--config", config_file, "--config", override, "--trainer.fast_dev_run", "2"])
    assert cli.model.hparams.lr == 3e-3
    assert cli.model.num_classes == cli.datamodule.num_classes == cli.model.model.num_classes == 8
    assert cli.trainer.checkpoint_callback.monitor == "val_acc1"
    assert cli.trainer.checkpoint_callback.mode == "max"
    assert cli.trainer.global_step == 2


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_evaluate(subcommand, config_file):
    cli = cli_main([subcommand, "--config", config_file, "--trainer.fast_dev_run", "true"])
    prefix = "test" if subcommand == "test" else "val"
    assert {f"{prefix}_acc1", f"{prefix}_acc5", f"{prefix}_loss"} <= set(cli.trainer.callback_metrics)


def test_predict_returns_class_probabilities(config_file):
    cli = cli_main(["predict", "--config", config_file, "--trainer.fast_dev_run", "true"])
    probabilities = torch.cat(cli.trainer.predict_loop.predictions)
    assert probabilities.shape == (8, 8)
    assert torch.allclose(probabilities.sum(1), torch.ones(8))


def final_state(cli) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in cli.model.state_dict().items()}


class StopAfterFirstEpoch(Callback):
    """An interruption: the schedule still spans max_epochs, but training stops after epoch 0."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Shuffling, mixup, drop path and EMA are all random or stateful: the second epoch must replay."""
    def config(root: Path, callbacks: list[dict]) -> list[str]:
        settings = tiny_config(root, max_epochs=2, callbacks=callbacks)
        settings["model"]["init_args"].update(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1,
                                              ema_decay=0.9, warmup_epochs=1)
        settings["model"]["init_args"]["backbone_args"]["drop_path_rate"] = 0.3
        return ["fit", "--config", write_config(tmp_path / f"{root.name}-{len(callbacks)}.yaml", settings)]

    straight = final_state(cli_main(config(tmp_path / "straight", [])))
    interrupted = cli_main(config(tmp_path / "resumed", [{"class_path": f"{__name__}.StopAfterFirstEpoch"}]))
    assert interrupted.trainer.global_step == 4
    resumed_cli = cli_main(config(tmp_path / "resumed", []) + ["--ckpt_path", "last"])
    resumed = final_state(resumed_cli)
    assert resumed_cli.trainer.global_step == 8
    assert any(key.startswith("ema.") for key in resumed)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.mark.parametrize("typo, message", [
    ({"model": {"init_args": {"labl_smoothing": 0.1}}}, "labl_smoothing"),
    ({"trainer": {"max_epoch": 3}}, "trainer.max_epoch"),
    ({"data": {"init_args": {"batchsize": 3}}}, "batchsize"),
])
def test_a_typo_is_a_clear_error(typo, message, config_file, tmp_path, capsys):
    bad = write_config(tmp_path / "typo.yaml", typo)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", config_file, "--config", bad])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert message in error and "not accept" in error


def test_print_config_shows_the_resolved_classes(config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", config_file, "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: tasks.classification.ClassificationTask" in printed
    assert "class_path: tasks.classification.SyntheticShapesDataModule" in printed


def test_ddp_with_two_cpu_processes(tmp_path):
    """`python -m gspn` with strategy ddp: Lightning relaunches the command for the second process."""
    config = write_config(tmp_path / "ddp.yaml", tiny_config(tmp_path / "run", strategy="ddp", devices=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "gspn", "fit", "--config", config], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2  # 32 samples / (2 processes * batch 8)


CONFIGS = REPO / "tasks" / "classification" / "configs"


@pytest.mark.parametrize("backbone", ["gspn_t", "gspn_s", "gspn_b", "gspn2_t"])
def test_imagenet_recipes_parse(backbone, tmp_path, capsys):
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(CONFIGS / "imagenet.yaml"), "--config", str(CONFIGS / f"{backbone}.yaml"),
                  "--data.init_args.root", str(tmp_path), "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert f"backbone: {backbone}" in printed and "ema_decay: 0.9999" in printed and "precision: bf16-mixed" in printed


def test_image_folder_through_the_command_scales_the_learning_rate(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40 + i, 36), (60 * i, 100, 200)).save(tmp_path / split / name / f"{i}.jpg")
    config = tiny_config(tmp_path / "run", fast_dev_run=True)
    config["model"]["init_args"].update(lr=1e-3, lr_batch_size=16)
    config["data"] = {"class_path": "ImageFolderDataModule",
                      "init_args": {"root": str(tmp_path), "image_size": 32, "batch_size": 4, "num_workers": 0}}
    cli = cli_main(["fit", "--config", write_config(tmp_path / "folders.yaml", config)])
    assert cli.model.num_classes == 2
    assert cli.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(1e-3 * 4 / 16)
