"""The checkpoint callback of the `gspn` command: Lightning's ModelCheckpoint, plus what makes every
run resumable exactly and nothing lost.

- One folder per run (runs.py); with `fast_dev_run` nothing is written.
- Every file is written atomically: to a temporary file in the same folder, flushed to disk, then
  renamed, so a full disk or a kill while saving leaves the previous checkpoint whole.
- Ctrl-C (SIGINT): the run stops before its next training step and writes last.ckpt there, a point
  it resumes from exactly; the command then exits with status 130. A second Ctrl-C stops at once.
- last.ckpt is written after every validation (Lightning itself does so only when the monitored
  metric improved) and when training ends, unless it already holds the final step (a run of 3,400
  steps validated every 500 would otherwise keep step 3,000). A run that stops before its target (max_time, early stopping) says how far it got, and
  its checkpoint records it under "run". The EMA callback copies the average into the model only at
  `on_fit_end`, after this, so the final checkpoint still holds the raw weights beside the average.

Lightning private members used (checked against lightning 2.6; tests/platform/test_runs.py fails
if an upgrade removes them; the command's own are listed in gspn/cli.py):
ModelCheckpoint._last_global_step_saved, _save_last_checkpoint, _monitor_candidates,
_should_skip_saving_checkpoint, _should_save_on_train_epoch_end.
"""

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from .runs import checkpoint_base, claim_run_folder, is_run_folder


class RunInterrupted(Exception):
    """Training stopped on Ctrl-C; `checkpoint` is the last.ckpt written (None when no step was trained)."""

    def __init__(self, step: int, checkpoint: str | None):
        self.step, self.checkpoint = step, checkpoint
        saved = f"saved {checkpoint}; continue with --ckpt_path last" if checkpoint else "nothing to save"
        super().__init__(f"interrupted after step {step}: {saved}")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def target_steps(trainer) -> int | None:
    total = trainer.estimated_stepping_batches
    return None if total == float("inf") else int(total)


def stop_reason(trainer) -> str:
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and (callback.time_remaining() or 0) <= 0:
            return "max_time"
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch:
            return "early stopping"
    return "a stop request (trainer.should_stop)"


class Checkpoint(ModelCheckpoint):
    def setup(self, trainer, pl_module, stage: str) -> None:
        # A fresh folder is claimed here; the checkpoint a run resumes from is read after setup, and
        # load_state_dict then moves back to that run's folder.
        self.base = getattr(self, "base", None) or checkpoint_base(self.dirpath, trainer.default_root_dir)
        folder = None
        if stage == "fit" and not trainer.fast_dev_run:
            folder = trainer.strategy.broadcast(claim_run_folder(self.base) if trainer.is_global_zero else None)
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        self.dirpath = str(folder or self.base)
        super().setup(trainer, pl_module, stage)
        self.interrupted = False
        self.ending = False

    def load_state_dict(self, state_dict: dict) -> None:
        stored = state_dict.get("dirpath")
        if stored and stored != self.dirpath and is_run_folder(stored, self.base) and Path(stored).is_dir():
            claimed, self.dirpath = Path(self.dirpath), stored
            with contextlib.suppress(OSError):  # another rank removed it, or it is not empty
                claimed.rmdir()
        super().load_state_dict(state_dict)

    def on_validation_end(self, trainer, pl_module) -> None:
        # Lightning 2.6 refreshes last.ckpt after a validation only when the monitored metric improved.
        super().on_validation_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer) \
                and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # Ctrl-C.
    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.fast_dev_run:
            rank_zero_info(f"checkpoints: {self.dirpath}")
        self.previous_handler = None
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum, frame) -> None:
        if self.interrupted:
            self.restore_handler()
            raise KeyboardInterrupt
        self.interrupted = True
        sys.stderr.write("\nCtrl-C: stopping before the next training step and saving last.ckpt "
                         "(Ctrl-C again to stop at once)\n")

    def restore_handler(self) -> None:
        if getattr(self, "previous_handler", None) is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        stop = self.interrupted
        if trainer.world_size > 1:  # every rank must take part in the save
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        saved = None
        if self.save_last and not trainer.fast_dev_run and trainer.global_step > 0:
            if self._last_global_step_saved != trainer.global_step:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            saved = self.last_model_path
        self.restore_handler()
        raise RunInterrupted(trainer.global_step, saved)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.restore_handler()
        super().on_exception(trainer, pl_module, exception)

    # The end of training.
    def on_train_end(self, trainer, pl_module) -> None:
        self.restore_handler()
        if trainer.fast_dev_run:
            return
        target = target_steps(trainer)
        self.stopped_by = stop_reason(trainer) if target is not None and trainer.global_step < target else None
        if self.stopped_by:
            rank_zero_warn(f"stopped by {self.stopped_by} after {trainer.global_step:,} of {target:,} steps; "
                           "continue with --ckpt_path last (and a larger limit)")
        if self.save_last and (self._last_global_step_saved != trainer.global_step or self.stopped_by):
            self.ending = True
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self.ending = False
        if self.best_model_path:
            score = f" ({self.monitor} {self.best_model_score:.4g})" if self.best_model_score is not None else ""
            rank_zero_info(f"best checkpoint: {self.best_model_path}{score}")
        if self.last_model_path:
            rank_zero_info(f"last checkpoint: {self.last_model_path} (step {trainer.global_step:,})")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        target = target_steps(trainer)
        checkpoint["run"] = {"global_step": trainer.global_step, "target_steps": target,
                             "stopped_by": getattr(self, "stopped_by", None) if self.ending else None}
        epoch_loop = trainer.fit_loop.epoch_loop
        if self.ending and 0 < epoch_loop.batch_progress.current.processed < trainer.num_training_batches:
            unfinished_epoch(checkpoint)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.restore_handler()


def unfinished_epoch(checkpoint: dict) -> None:
    """Lightning counts an epoch complete when training stops inside it (max_steps, max_time). Saved
    that way, a resumed run would start the next epoch and lose the rest of this one (another shuffle,
    other seeds); marked as in progress, it continues this epoch where it stopped."""
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for counters in (progress["total"], progress["current"]):
        counters["processed"] -= 1
        counters["completed"] -= 1
    checkpoint["epoch"] -= 1
