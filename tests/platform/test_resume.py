"""A run killed (SIGKILL) or interrupted (Ctrl-C) and resumed with `--ckpt_path last`, or extended
after it finished, ends with the same weights, bit for bit, as a run that was never stopped."""

import signal

import pytest
import torch

from .conftest import assert_same_weights, fault, fit

TASKS = ["classification", "segmentation", "generation"]
LAST = ("checkpoints", "run-1", "last.ckpt")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted eight-step run of each task (computed once)."""
    finished = {}

    def run(task: str):
        if task not in finished:
            root = tmp_path_factory.mktemp(f"straight-{task}")
            result = fit(root, "run", task)
            assert result.returncode == 0, result.stderr[-3000:]
            finished[task] = root.joinpath("run", *LAST)
        return finished[task]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("step, moment", [(3, "backward"), (6, "start")],
                         ids=["between-saves", "right-after-a-save"])
def test_killed_and_resumed_equals_straight(task, step, moment, straight, tmp_path):
    """Killed inside step 4 (the newest checkpoint is step 2's, written by a validation inside epoch 0),
    or as step 7 begins (right after the checkpoint of step 6, inside epoch 1)."""
    killed = fit(tmp_path, "run", task, callbacks=[fault("SendSignal", step=step, name="SIGKILL", moment=moment)])
    assert killed.returncode == -signal.SIGKILL
    saved = torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)
    assert saved["global_step"] == (2 if step == 3 else 6)
    resumed = fit(tmp_path, "run", task, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(straight(task), tmp_path.joinpath("run", *LAST))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_ctrl_c_saves_and_resumes_exactly(task, straight, tmp_path):
    """Ctrl-C inside step 4: the run finishes that step, writes last.ckpt at step 4 and exits with 130."""
    stopped = fit(tmp_path, "run", task, callbacks=[fault("SendSignal", step=3, name="SIGINT", moment="backward")])
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted after step 4" in stopped.stderr and "--ckpt_path last" in stopped.stderr
    assert torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)["global_step"] == 4
    resumed = fit(tmp_path, "run", task, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(straight(task), tmp_path.joinpath("run", *LAST))


@pytest.mark.slow
@pytest.mark.parametrize("task, first, limit", [("classification", ["--trainer.max_epochs", "1"], "max_epochs"),
                                                ("generation", ["--trainer.max_steps", "5"], "max_steps")],
                         ids=["epochs", "steps-mid-epoch"])
def test_extending_a_finished_run_equals_the_longer_run(task, first, limit, straight, tmp_path):
    """A constant schedule: 1 epoch then extended to 2; 5 steps (inside epoch 1, saved as training ends) then 8."""
    constant = ["--model.init_args.schedule", "constant"]
    longer = fit(tmp_path, "longer", task, *constant)
    assert longer.returncode == 0, longer.stderr[-3000:]
    short = fit(tmp_path, "run", task, *constant, *first)
    assert short.returncode == 0, short.stderr[-3000:]
    extended = fit(tmp_path, "run", task, *constant, "--ckpt_path", "last")
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert torch.load(tmp_path.joinpath("run", *LAST), weights_only=True)["global_step"] == 8
    assert_same_weights(tmp_path.joinpath("longer", *LAST), tmp_path.joinpath("run", *LAST))
    assert "planned for" not in extended.stderr


@pytest.mark.slow
def test_extending_with_a_decaying_schedule_warns(tmp_path):
    short = fit(tmp_path, "run", "classification", "--trainer.max_epochs", "1")
    assert short.returncode == 0, short.stderr[-3000:]
    extended = fit(tmp_path, "run", "classification", "--ckpt_path", "last")
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert "planned for 4 steps and now has 8" in extended.stderr and "cosine" in extended.stderr
