"""Nothing silent: a non-finite step stops the run (or is skipped, counted and reported), bad
checkpoints are one line naming the file and the cause, the command's own errors are one line."""

import pytest
import torch
from PIL import Image

from gspn.cli import cli_main
from gspn.errors import NonFiniteError
from tests.cli.conftest import tiny_config
from tests.config_files import write_config
from tests.tasks.generation.conftest import tiny_config as generation_config

from .conftest import fault, run_gspn

LAST = ("checkpoints", "run-1", "last.ckpt")


def poisoned(tmp_path, *args: str, step: int = 5):
    config = tiny_config(tmp_path / "run", max_epochs=2, val_check_interval=2, logger=False,
                         callbacks=[fault("PoisonBatch", step=step)])
    config["model"]["init_args"]["ema_decay"] = 0.9
    return ["fit", "--config", write_config(tmp_path / "poisoned.yaml", config), *args]


def test_a_nan_batch_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError, match=r"step 6 \(epoch 1, batch 1\): loss nan.*The batch: training samples "):
        cli_main(poisoned(tmp_path))
    last = tmp_path.joinpath("run", *LAST)
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_skipping_non_finite_steps_leaves_the_weights_finite_and_reports_them(tmp_path):
    with pytest.warns(UserWarning, match=r"skipped 1 steps with a non-finite loss or gradients: 6"):
        cli = cli_main(poisoned(tmp_path, "--model.init_args.nonfinite", "skip"))
    assert cli.trainer.global_step == 8
    checkpoint = torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)
    assert checkpoint["skipped_steps"] == [6]
    for state in (checkpoint["state_dict"], checkpoint["current_model_state"]):
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_skipped_step_changes_neither_weights_nor_optimiser(tmp_path):
    """Step 2 poisoned and skipped: the weights after it are those after step 1."""
    config = tiny_config(tmp_path / "run", max_steps=2, logger=False, callbacks=[fault("PoisonBatch", step=1)])
    one = cli_main(["fit", "--config", write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", max_steps=1,
                                                                                       logger=False))])
    two = cli_main(["fit", "--config", write_config(tmp_path / "two.yaml", config), "--model.init_args.nonfinite",
                    "skip", "--model.init_args.schedule", "constant"])
    for key, value in one.model.state_dict().items():
        assert torch.equal(value, two.model.state_dict()[key]), key
    state = two.trainer.optimizers[0].state
    assert all(int(s["step"]) == 1 for s in state.values())


@pytest.mark.parametrize("content, cause", [(b"", "is empty"), (b"PK\x03\x04 truncated", "truncated or not")])
def test_a_broken_checkpoint_is_one_line_naming_it(content, cause, tmp_path, capsys):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(content)
    config = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "run"))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["validate", "--config", config, "--ckpt_path", str(broken)])
    assert exit_info.value.code == 2
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert str(broken) in error and cause in error


def test_a_checkpoint_of_another_task_is_refused(tmp_path, capsys):
    generation = write_config(tmp_path / "gen.yaml", generation_config(tmp_path / "gen"))
    cli_main(["fit", "--config", generation])
    classification = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "run"))
    with pytest.raises(SystemExit):
        cli_main(["validate", "--config", classification, "--ckpt_path", str(tmp_path.joinpath("gen", *LAST))])
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert "a checkpoint of GenerationTask, but the config's model is ClassificationTask" in error


def test_a_checkpoint_with_other_classes_is_refused(tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "run", max_steps=1))
    cli_main(["fit", "--config", config])
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "folders" / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(tmp_path / "folders" / split / name / "0.png")
    with pytest.raises(SystemExit):
        cli_main(["validate", "--config", config, "--ckpt_path", "last", "--data", "ImageFolderDataModule",
                  "--data.init_args.root", str(tmp_path / "folders"), "--data.init_args.image_size", "32"])
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert "the checkpoint's model has num_classes=8 but the data module gives num_classes=2" in error


def test_only_values_the_user_gave_are_reported_as_overridden(tmp_path, recwarn):
    config = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "run", max_steps=1))
    cli_main(["fit", "--config", config, "--model.init_args.label_smoothing", "0.2"])
    cli_main(["validate", "--config", config, "--ckpt_path", "last"])
    assert not [w for w in recwarn if "is taken from the checkpoint" in str(w.message)]


def test_sampling_settings_can_change_at_predict_time(tmp_path):
    config = write_config(tmp_path / "gen.yaml", generation_config(tmp_path / "gen"))
    cli_main(["fit", "--config", config])
    cli = cli_main(["predict", "--config", config, "--ckpt_path", "last", "--model.init_args.guidance_scale", "3.5",
                    "--model.init_args.sampling_steps", "3"])
    assert cli.model.hparams.guidance_scale == 3.5 and cli.model.hparams.sampling_steps == 3
    assert cli.model.hparams.lr == 1e-3  # training settings still come from the checkpoint


def test_the_commands_own_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    config = tiny_config(tmp_path / "run", max_steps=3, logger=False, callbacks=[fault("PoisonBatch", step=1)])
    path = write_config(tmp_path / "run.yaml", config)
    short = run_gspn("fit", "--config", path, cwd=tmp_path)
    assert short.returncode == 1
    lines = short.stderr.strip().splitlines()
    assert lines[-2].startswith("error: step 2 (epoch 0, batch 1): loss nan") and "Traceback" not in short.stderr
    assert lines[-1] == "(the traceback: --debug)"
    debug = run_gspn("fit", "--config", path, "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "NonFiniteError" in debug.stderr
