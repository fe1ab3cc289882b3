"""Where a run writes: one checkpoint folder per run, nothing on fast_dev_run, `last` and `best` that
follow the newest run, atomic files, the end of a run said plainly, predictions in one file."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gspn.cli import cli_main
from gspn.tasks.checkpoint import AtomicCheckpointIO
from tests.cli.conftest import tiny_config
from tests.config_files import write_config

from .conftest import fault, fit


def config_file(tmp_path: Path, name: str = "run", **trainer) -> str:
    return write_config(tmp_path / f"{name}.yaml", tiny_config(tmp_path / name, **trainer))


def test_fast_dev_run_writes_no_checkpoint(tmp_path):
    cli_main(["fit", "--config", config_file(tmp_path, logger=False), "--trainer.fast_dev_run", "2"])
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_each_run_has_its_own_folder_and_best_follows_the_newest(tmp_path):
    config = config_file(tmp_path, logger=False)
    first = cli_main(["fit", "--config", config])
    second = cli_main(["fit", "--config", config, "--model.init_args.lr", "0.01"])
    base = tmp_path / "run" / "checkpoints"
    assert Path(first.trainer.checkpoint_callback.dirpath) == base / "run-1"
    assert Path(second.trainer.checkpoint_callback.dirpath) == base / "run-2"
    for run, lr in (("run-1", 1e-3), ("run-2", 0.01)):
        assert torch.load(base / run / "last.ckpt", weights_only=True)["hyper_parameters"]["lr"] == lr
    assert not list(base.rglob("last-v*.ckpt"))
    validated = cli_main(["validate", "--config", config, "--ckpt_path", "best"])
    assert Path(validated.trainer.ckpt_path).parent == base / "run-2"
    resumed = cli_main(["fit", "--config", config, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert Path(resumed.trainer.checkpoint_callback.dirpath) == base / "run-2"  # continues its run
    assert sorted(p.name for p in base.iterdir()) == ["run-1", "run-2"]


def test_last_without_a_checkpoint_is_an_error_naming_the_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", config_file(tmp_path), "--ckpt_path", "last"])
    assert exit_info.value.code == 2
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert "--ckpt_path last: no run under" in error and str(tmp_path / "run" / "checkpoints") in error


class Unpicklable:
    def __reduce__(self):
        raise OSError(28, "No space left on device")


def test_a_failed_save_leaves_the_previous_file_whole(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.ones(1000)}, path)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_a_full_disk_during_fit_leaves_last_ckpt_loadable(tmp_path):
    """From step 3 on no file may grow past 4 KB: the save at step 4 fails, step 2's last.ckpt stays."""
    result = fit(tmp_path, "run", "classification", callbacks=[fault("FillDisk", step=3)])
    assert result.returncode != 0
    folder = tmp_path / "run" / "checkpoints" / "run-1"
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]


def test_a_run_stopped_by_max_time_says_how_far_it_got(tmp_path):
    config = config_file(tmp_path, logger=False, max_epochs=50, max_time="00:00:00:01")
    with pytest.warns(UserWarning, match=r"stopped by max_time after \d+ of 200 steps"):
        cli = cli_main(["fit", "--config", config])
    step = cli.trainer.global_step
    assert 0 < step < 200
    run = torch.load(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt", weights_only=True)["run"]
    assert run == {"global_step": step, "target_steps": 200, "stopped_by": "max_time"}


def test_a_finished_run_records_no_stop(tmp_path):
    cli_main(["fit", "--config", config_file(tmp_path, logger=False)])
    run = torch.load(tmp_path / "run" / "checkpoints" / "run-1" / "last.ckpt", weights_only=True)["run"]
    assert run == {"global_step": 4, "target_steps": 4, "stopped_by": None}


def test_predict_with_a_ddp_config_writes_one_file(tmp_path):
    config = config_file(tmp_path, strategy="ddp", devices=2)
    with pytest.warns(UserWarning, match="gspn predict runs on one device"):
        cli_main(["predict", "--config", config])
    outputs = tmp_path / "run" / "predictions"
    assert [p.name for p in outputs.iterdir()] == ["predictions.csv"]
    with (outputs / "predictions.csv").open() as file:
        assert len(list(csv.reader(file))) == 1 + 16  # the header and every validation image


def test_prediction_output_dir_can_be_given(tmp_path):
    cli_main(["predict", "--config", config_file(tmp_path), "--prediction.output_dir", str(tmp_path / "elsewhere")])
    assert (tmp_path / "elsewhere" / "predictions.csv").is_file()
    assert not (tmp_path / "run" / "predictions").exists()


def test_lightning_private_members_are_still_there():
    """The checkpoint callback and the command rely on these (tasks/checkpoint.py, gspn/cli.py): an
    upgrade of lightning that removes one fails here, not in a user's run."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    for name in ("_last_global_step_saved", "_save_last_checkpoint", "_monitor_candidates",
                 "_should_skip_saving_checkpoint", "_should_save_on_train_epoch_end"):
        assert hasattr(ModelCheckpoint(), name), name
    assert callable(getattr(LightningCLI, "_parse_ckpt_path"))
    source = Path(sys.modules[LightningCLI.__module__].__file__).read_text()
    assert "self._subcommand_parsers" in source and "self._parse_ckpt_path()" in source
