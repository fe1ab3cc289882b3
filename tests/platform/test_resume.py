"""A run killed (SIGKILL) or interrupted (Ctrl-C) and resumed with `--ckpt_path last`, or extended
after it finished, ends with the same weights, bit for bit, as a run that was never stopped."""

import signal

import pytest
import torch

from gspn.cli import cli_main
from tests.config_files import write_config

from .conftest import assert_same_weights, fault, fit, task_config

LAST = ("checkpoints", "run-1", "last.ckpt")


def saved_step(root) -> int:
    return torch.load(root.joinpath("run", *LAST), weights_only=True)["global_step"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "segmentation", "generation"])
def test_killed_interrupted_and_resumed_equals_straight(task, tmp_path):
    """Eight steps, four an epoch, a validation (and a checkpoint) every two. One run is stopped three
    times and resumed each time from last.ckpt:
    1. killed inside step 4, between two saves: the newest checkpoint is step 2's, written by a
       validation inside epoch 0;
    2. Ctrl-C inside step 5: the run finishes that step, saves step 5 (no validation there) and exits 130;
    3. killed as step 7 begins, right after the checkpoint of step 6 (inside epoch 1);
    then it runs to the end."""
    straight = fit(tmp_path, "straight", task)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = fit(tmp_path, "run", task, callbacks=[fault("SendSignal", step=3, name="SIGKILL", moment="backward")])
    assert killed.returncode == -signal.SIGKILL and saved_step(tmp_path) == 2

    stopped = fit(tmp_path, "run", task, "--ckpt_path", "last",
                  callbacks=[fault("SendSignal", step=4, name="SIGINT", moment="backward")])
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted after step 5" in stopped.stderr and "--ckpt_path last" in stopped.stderr
    assert saved_step(tmp_path) == 5

    killed = fit(tmp_path, "run", task, "--ckpt_path", "last",
                 callbacks=[fault("SendSignal", step=6, name="SIGKILL", moment="start")])
    assert killed.returncode == -signal.SIGKILL and saved_step(tmp_path) == 6

    finished = fit(tmp_path, "run", task, "--ckpt_path", "last")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert saved_step(tmp_path) == 8
    assert_same_weights(tmp_path.joinpath("straight", *LAST), tmp_path.joinpath("run", *LAST))


def fit_here(tmp_path, name: str, task: str, *args: str) -> None:
    config = write_config(tmp_path / f"{name}.yaml", task_config(task, tmp_path / name))
    cli_main(["fit", "--config", config, *args])


@pytest.mark.parametrize("task, first", [("classification", ["--trainer.max_epochs", "1"]),
                                         ("segmentation", ["--trainer.max_epochs", "1"]),
                                         ("generation", ["--trainer.max_steps", "5"])],
                         ids=["classification-epochs", "segmentation-epochs", "generation-steps-mid-epoch"])
def test_extending_a_finished_run_equals_the_longer_run(task, first, tmp_path, recwarn):
    """A constant schedule: 1 epoch then extended to 2; or 5 steps (inside epoch 1, saved as training
    ends) then extended to 8."""
    constant = ["--model.init_args.schedule", "constant"]
    fit_here(tmp_path, "longer", task, *constant)
    fit_here(tmp_path, "run", task, *constant, *first)
    fit_here(tmp_path, "run", task, *constant, "--ckpt_path", "last")
    assert saved_step(tmp_path) == 8
    assert_same_weights(tmp_path.joinpath("longer", *LAST), tmp_path.joinpath("run", *LAST))
    assert not [w for w in recwarn if "planned for" in str(w.message)]


def test_extending_with_a_decaying_schedule_warns(tmp_path):
    fit_here(tmp_path, "run", "classification", "--trainer.max_epochs", "1")
    with pytest.warns(UserWarning, match="planned for 4 steps and now has 8: its cosine learning-rate schedule"):
        fit_here(tmp_path, "run", "classification", "--ckpt_path", "last")
