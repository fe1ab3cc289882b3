"""Faults injected into a real `gspn fit` through its config: signals at a chosen step, a NaN batch,
a disk that fills up. Each acts when `trainer.global_step == step`, i.e. during training step step + 1."""

import os
import resource
import signal

from lightning.pytorch import Callback


class SendSignal(Callback):
    """Sends `name` (SIGKILL, SIGINT) to this process as step `step` + 1 begins ("start", right after
    any checkpoint of step `step`) or inside it, before its backward ("backward")."""

    def __init__(self, step: int, name: str = "SIGKILL", moment: str = "start"):
        self.step, self.signal, self.moment = step, getattr(signal, name), moment

    def fire(self, trainer, moment: str) -> None:
        if trainer.global_step == self.step and moment == self.moment:
            self.step = -1  # once
            os.kill(os.getpid(), self.signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.fire(trainer, "start")

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.fire(trainer, "backward")


class PoisonBatch(Callback):
    """Puts a NaN into the first input of the batch of step `step` + 1."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            images = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
            images.view(-1)[0] = float("nan")


class FillDisk(Callback):
    """From step `step` + 1 on, no file of this process may grow past `limit` bytes (writes fail with
    EFBIG, as on a full disk)."""

    def __init__(self, step: int, limit: int = 4096):
        self.step, self.limit = step, limit

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, resource.RLIM_INFINITY))
