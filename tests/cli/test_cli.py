"""The real `gspn` command on tiny configs, on CPU: composition, links, errors, checkpoints, prediction."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule
from PIL import Image

from gspn.cli import cli_main, import_tasks, shipped_configs

from .conftest import tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]


def test_every_task_package_is_imported():
    modules = import_tasks()
    assert {"gspn.tasks.base", "gspn.tasks.classification.module", "gspn.tasks.classification.data"} <= set(modules)


def test_a_task_that_fails_to_import_is_an_error(tmp_path, monkeypatch):
    import gspn.tasks

    broken = tmp_path / "broken_task"
    broken.mkdir()
    (broken / "__init__.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.setattr(gspn.tasks, "__path__", [*gspn.tasks.__path__, str(tmp_path)])
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist"):
        import_tasks()
    sys.modules.pop("gspn.tasks.broken_task", None)


def test_importing_gspn_and_its_cli_does_not_need_lightning():
    code = "import sys, gspn, gspn.cli, gspn.models; assert not any(m.startswith('lightning') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_users_tasks_module_does_not_shadow_the_tasks(config_file, tmp_path):
    (tmp_path / "tasks.py").write_text("raise SystemExit('the user module was imported')\n")
    result = subprocess.run([sys.executable, "-m", "gspn", "fit", "--config", config_file, "--print_config"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: gspn.tasks.classification.ClassificationTask" in result.stdout


def test_gspn_configs_lists_the_installed_configs(capsys):
    cli_main(["configs"])
    printed = capsys.readouterr().out
    listed = [Path(line.strip()) for line in printed.splitlines()[1:]]
    assert listed == shipped_configs()
    names = {f"{path.parent.name}/{path.name}" for path in listed}
    assert {"trainer/cpu.yaml", "trainer/ddp.yaml", "trainer/debug.yaml", "configs/demo.yaml"} <= names
    assert all(path.is_file() for path in listed)


def test_fit_later_config_wins_and_links_num_classes(config_file, tmp_path):
    override = write_config(tmp_path / "override.yaml", {"model": {"init_args": {"lr": 3e-3}}})
    cli = cli_main(["fit", "--config", config_file, "--config", override, "--trainer.fast_dev_run", "2"])
    assert cli.model.hparams.lr == 3e-3
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes == cli.model.model.num_classes == 8
    assert cli.trainer.checkpoint_callback.monitor == "val_acc1"
    assert cli.trainer.checkpoint_callback.mode == "max"
    assert cli.trainer.global_step == 2


def test_omegaconf_interpolation_sees_later_configs_and_the_command_line(config_file, tmp_path, capsys):
    interpolated = write_config(tmp_path / "interpolated.yaml", {
        "trainer": {"max_steps": 3}, "model": {"init_args": {"warmup_steps": "${trainer.max_steps}"}}})
    later = write_config(tmp_path / "later.yaml", {"trainer": {"max_steps": 5}})

    def warmup(*extra: str) -> str:
        with pytest.raises(SystemExit):
            cli_main(["fit", "--config", config_file, "--config", interpolated, *extra, "--print_config"])
        return next(line for line in capsys.readouterr().out.splitlines() if "warmup_steps" in line).split()[-1]

    assert warmup() == "3"
    assert warmup("--config", later) == "5"
    assert warmup("--config", later, "--trainer.max_steps", "7") == "7"


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_evaluate(subcommand, config_file):
    cli = cli_main([subcommand, "--config", config_file, "--trainer.fast_dev_run", "true"])
    prefix = "test" if subcommand == "test" else "val"
    assert {f"{prefix}_acc1", f"{prefix}_acc5", f"{prefix}_loss"} <= set(cli.trainer.callback_metrics)


def test_training_by_steps_with_epoch_warmup(config_file):
    cli = cli_main(["fit", "--config", config_file, "--trainer.max_epochs", "-1", "--trainer.max_steps", "6",
                    "--model.init_args.warmup_epochs", "1", "--model.init_args.schedule", "poly"])
    assert cli.trainer.global_step == 6
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3 * 0.01)  # 4 warm-up steps (an epoch), then poly to the floor


def test_sgd_from_the_config(config_file, tmp_path):
    sgd = write_config(tmp_path / "sgd.yaml", {"model": {"init_args": {
        "optimizer": "SGD", "optimizer_args": {"momentum": 0.9, "nesterov": True}}}})
    cli = cli_main(["fit", "--config", config_file, "--config", sgd, "--trainer.fast_dev_run", "1"])
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"]


def test_without_a_logger(config_file):
    cli = cli_main(["fit", "--config", config_file, "--trainer.logger", "false", "--trainer.max_steps", "2"])
    assert cli.trainer.global_step == 2 and not cli.trainer.loggers


class DataWithoutClasses(LightningDataModule):
    def __init__(self, batch_size: int = 8):
        super().__init__()
        self.batch_size = batch_size


def command_error(args: list[str], capsys) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_a_link_the_data_module_cannot_give_is_a_clear_error(config_file, capsys):
    lines = command_error(["fit", "--config", config_file, "--data", f"{__name__}.DataWithoutClasses"], capsys)
    assert len(lines) <= 4
    assert "num_classes is needed" in lines[0] and "data module" in lines[0]


def test_an_unknown_backbone_is_one_line(config_file, capsys):
    lines = command_error(["fit", "--config", config_file, "--model.init_args.backbone", "gspn_xx"], capsys)
    assert len(lines) <= 4
    assert "unknown backbone model 'gspn_xx'; available:" in lines[0] and "gspn_t" in lines[0]
    assert "gspn_denoiser" not in lines[0]


def test_a_denoiser_as_the_backbone_is_one_line(config_file, capsys):
    lines = command_error(["fit", "--config", config_file, "--model.init_args.backbone", "gspn_denoiser_nano4"],
                          capsys)
    assert "'gspn_denoiser_nano4' (a denoiser, not a backbone)" in lines[0]


@pytest.mark.parametrize("typo, message, suggestion", [
    ({"model": {"init_args": {"labl_smoothing": 0.1}}}, "labl_smoothing", "label_smoothing"),
    ({"trainer": {"max_epoch": 3}}, "trainer.max_epoch", "max_epochs"),
    ({"data": {"init_args": {"batchsize": 3}}}, "batchsize", "batch_size"),
])
def test_a_typo_is_a_short_clear_error_with_a_suggestion(typo, message, suggestion, config_file, tmp_path, capsys):
    bad = write_config(tmp_path / "typo.yaml", typo)
    lines = command_error(["fit", "--config", config_file, "--config", bad], capsys)
    assert lines[0].startswith("error:") and message in "\n".join(lines)
    assert any(f"did you mean {suggestion}" in line or f"did you mean trainer.{suggestion}" in line for line in lines)
    assert len(lines) < 25  # the error, not ~60 lines of usage


def test_print_config_shows_the_resolved_classes(config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", config_file, "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: gspn.tasks.classification.ClassificationTask" in printed
    assert "class_path: gspn.tasks.classification.SyntheticShapesDataModule" in printed


def test_validate_best_in_a_new_run_and_overridden_arguments_warn(config_file):
    cli_main(["fit", "--config", config_file, "--trainer.max_epochs", "2"])
    with pytest.warns(UserWarning, match=r"model\.init_args\.lr is taken from the checkpoint"):
        cli = cli_main(["validate", "--config", config_file, "--ckpt_path", "best", "--model.init_args.lr", "0.5"])
    best = cli.trainer.ckpt_path
    assert Path(best).name.startswith("epoch=") and Path(best).parent.name == "run-1"
    assert cli.model.hparams.lr == 1e-3
    assert "val_acc1" in cli.trainer.callback_metrics


def test_best_without_a_run_says_what_to_pass(config_file, capsys):
    lines = command_error(["validate", "--config", config_file, "--ckpt_path", "best"], capsys)
    assert "--ckpt_path best: no run under" in lines[0] and "checkpoints" in lines[0]


def test_predict_writes_a_csv_for_a_folder_of_images(config_file, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (40 + 3 * i, 30), (50 * i, 120, 200 - 30 * i)).save(folder / f"image{i}.png")
    cli = cli_main(["predict", "--config", config_file, "--data.init_args.predict_root", str(folder)])
    assert not cli.trainer.predict_loop.predictions  # written, not kept in memory
    with (tmp_path / "run" / "predictions" / "predictions.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["input"] + [f"{kind}{i}" for i in range(1, 6) for kind in ("class", "prob")]
    assert [Path(row[0]).name for row in rows[1:]] == [f"image{i}.png" for i in range(5)]
    images, _ = next(iter(cli.datamodule.predict_dataloader()))
    with torch.no_grad():
        probabilities = cli.model.eval()(images).softmax(dim=-1)
    classes = cli.datamodule.classes
    for row, image_probabilities in zip(rows[1:], probabilities):
        top = image_probabilities.topk(5)
        assert row[1::2] == [classes[i] for i in top.indices]
        assert [float(p) for p in row[2::2]] == pytest.approx(top.values.tolist(), abs=1e-6)


def final_state(cli) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in cli.model.state_dict().items()}


class Crash(Exception):
    pass


class Interrupt(Callback):
    """A crash as step `steps` + 1 begins, after the checkpoint a crash-safe run writes between steps;
    the schedule still spans the whole run. Mid-epoch unless `steps` ends an epoch."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.steps:
            trainer.save_checkpoint(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")
            raise Crash


@pytest.mark.parametrize("stop_at", [4, 6], ids=["epoch-end", "mid-epoch"])
def test_resumed_run_equals_uninterrupted_run(stop_at, tmp_path):
    """Shuffling, mixup, drop path and EMA are all random or stateful: the resumed steps must replay."""
    def config(root: Path, callbacks: list[dict]) -> list[str]:
        settings = tiny_config(root, max_epochs=2, callbacks=callbacks)
        settings["model"]["init_args"].update(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1,
                                              ema_decay=0.9, warmup_epochs=1)
        settings["model"]["init_args"]["backbone_args"]["drop_path_rate"] = 0.3
        return ["fit", "--config", write_config(tmp_path / f"{root.name}-{len(callbacks)}.yaml", settings)]

    straight = cli_main(config(tmp_path / "straight", []))
    expected = final_state(straight)
    interrupt = [{"class_path": f"{__name__}.Interrupt", "init_args": {"steps": stop_at}}]
    with pytest.raises(Crash):
        cli_main(config(tmp_path / "resumed", interrupt))
    resumed_cli = cli_main(config(tmp_path / "resumed", []) + ["--ckpt_path", "last"])
    assert resumed_cli.trainer.global_step == straight.trainer.global_step == 8
    resumed = final_state(resumed_cli)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key


class RecordEvaluatedWeights(Callback):
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.evaluated = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_evaluation_and_checkpoints_use_the_ema_weights(tmp_path):
    settings = tiny_config(tmp_path / "run", max_epochs=1, callbacks=[
        {"class_path": f"{__name__}.RecordEvaluatedWeights"}])
    settings["model"]["init_args"].update(lr=1e-2, ema_decay=0.5)
    cli = cli_main(["fit", "--config", write_config(tmp_path / "ema.yaml", settings)])
    recorder = next(c for c in cli.trainer.callbacks if isinstance(c, RecordEvaluatedWeights))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    weight = "model.head.fc.weight"
    assert not torch.equal(averaged[weight], raw[weight])
    for key in averaged:
        assert torch.equal(recorder.evaluated[key], averaged[key]), key
    # what load_checkpoint and `pretrained` read: the average
    from gspn.models import create_model, load_checkpoint
    model = create_model("gspn_nano", num_classes=8, **settings["model"]["init_args"]["backbone_args"])
    report = load_checkpoint(model, tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt")
    assert report.clean, report
    assert torch.equal(model.head.fc.weight, averaged[weight])


def test_the_demo_config_runs_composed_with_the_debug_preset(tmp_path):
    cli = cli_main(["fit", "--config", str(REPO / "tasks" / "classification" / "configs" / "demo.yaml"),
                    "--config", str(REPO / "configs" / "trainer" / "debug.yaml"),
                    "--trainer.default_root_dir", str(tmp_path)])
    assert cli.trainer.global_step == 1 and cli.trainer.world_size == 1
    assert isinstance(cli.model.model, torch.nn.Module) and cli.model.hparams.backbone == "gspn_nano"


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "fsdp", "multinode", "debug"])
def test_every_trainer_preset_composes(preset, config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", config_file, "--config", str(REPO / "configs" / "trainer" / f"{preset}.yaml"),
                  "--print_config"])
    assert exit_info.value.code == 0
    assert "trainer:" in capsys.readouterr().out


def test_ddp_with_two_cpu_processes(tmp_path):
    """`python -m gspn` with strategy ddp: Lightning relaunches the command for the second process."""
    config = write_config(tmp_path / "ddp.yaml", tiny_config(tmp_path / "run", strategy="ddp", devices=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "gspn", "fit", "--config", config], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    # nothing a user cannot act on: DDP's stride warning, Lightning's pytree deprecation, its logger advert
    noise = [line for line in (result.stderr + result.stdout).splitlines()
             if any(word in line for word in ("Warning", "deprecated", "Tip:"))]
    assert not noise, noise
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2  # 32 samples / (2 processes * batch 8)
    # rank zero alone draws the validation's pictures, without waiting for the other rank
    assert (tmp_path / "run" / "lightning_logs" / "version_0" / "confusion_matrix" / "step_0000002.png").is_file()


CONFIGS = REPO / "tasks" / "classification" / "configs"


@pytest.mark.parametrize("backbone", ["gspn_t", "gspn_s", "gspn_b", "gspn2_t"])
def test_imagenet_recipes_parse(backbone, tmp_path, capsys):
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "0.png")
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
    assert cli.model.hparams.num_classes == 2
    assert cli.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(1e-3 * 4 / 16)


class RecordRawWeights(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.raw = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_a_run_that_ends_between_validations_keeps_its_last_steps(tmp_path):
    """max_steps 3 with validations every 2 steps: last.ckpt holds step 3, the EMA average as its
    state_dict and the raw weights after step 3 (what a resumed run continues from) beside it."""
    settings = tiny_config(tmp_path / "run", max_epochs=None, max_steps=3, val_check_interval=2,
                           check_val_every_n_epoch=None, callbacks=[{"class_path": f"{__name__}.RecordRawWeights"}])
    settings["model"]["init_args"].update(lr=1e-2, ema_decay=0.5)
    cli = cli_main(["fit", "--config", write_config(tmp_path / "three.yaml", settings)])
    recorder = next(c for c in cli.trainer.callbacks if isinstance(c, RecordRawWeights))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(averaged["model.head.fc.weight"], raw["model.head.fc.weight"])
    for key in raw:
        assert torch.equal(raw[key], recorder.raw[key]), key
        assert torch.equal(averaged[key], cli.model.state_dict()[key]), key  # the model ends as the average
