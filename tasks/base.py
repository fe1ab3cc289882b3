"""The shared base of every task's LightningModule.

A task subclasses BaseTask and fills three hooks, called in this order by `__init__`:
`configure_models()` (build the networks from `self.hparams`; the module that is optimised is
`self.model`), `configure_losses()` and `configure_metrics()`; then it writes its step methods and,
for `gspn predict`, `write_prediction`. The base provides the optimiser (any torch.optim class,
AdamW by default, with parameter groups), a per-step schedule (warm-up in steps or epochs, then
cosine, polynomial or constant), an optional EMA of the weights (a Lightning callback; evaluation
and checkpoints use the average) and per-step reseeding, so that a run resumed from a checkpoint,
even one saved mid-epoch, continues exactly.

`data_links` names the values a task takes from its data module (the `gspn` command passes them to
the task's arguments of the same names); a value that is needed and neither linked nor given is an
error before anything is built.
"""

import math
import os
import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.lr_scheduler import LambdaLR

from .ema import EMA
from .optim import SCHEDULES, lr_factor, optimizer_class, parameter_groups


def seed_all(seed_sequence: np.random.SeedSequence) -> None:
    python_seed, numpy_seed, torch_seed = seed_sequence.generate_state(3)
    random.seed(int(python_seed))
    np.random.seed(int(numpy_seed))
    torch.manual_seed(int(torch_seed))


class BaseTask(LightningModule):
    """Args (shared by every task):
        lr: the peak learning rate, for `lr_batch_size` samples per step if that is given: the rate
            used is then lr * effective batch / lr_batch_size, with effective batch = the data
            module's batch_size * devices * nodes * accumulate_grad_batches.
        weight_decay: on weights of two or more dimensions only (not on norms, biases, scalars).
        optimizer: a class of torch.optim by name (AdamW, SGD, ...) or a dotted class path.
        optimizer_args: its other arguments, e.g. {betas: [0.9, 0.999]} or {momentum: 0.9, nesterov: true}.
        schedule: after warm-up, "cosine" or "poly" down to min_lr_ratio * the peak at the last
            step (max_steps, or max_epochs worth of steps), or "constant".
        warmup_epochs, warmup_steps: linear warm-up, in epochs (may be fractional) or optimiser
            steps; give one of them.
        min_lr_ratio: where the cosine or polynomial ends, as a fraction of the peak.
        poly_power: the exponent of the polynomial decay (1.0: linear, the segmentation recipe).
        ema_decay: keep an EMA of the weights with this decay; validation, checkpoints and
            `load_checkpoint` then use the averaged weights.
        ema_warmup: ramp the EMA decay up as min(ema_decay, (1 + n) / (10 + n)) over the first n updates.
    """

    monitor: ClassVar[str] = "val_loss"  # the metric that selects the best checkpoint
    monitor_mode: ClassVar[str] = "min"
    data_links: ClassVar[tuple[str, ...]] = ()  # arguments the `gspn` command takes from the data module

    def __init__(self, lr: float = 1e-3, lr_batch_size: int | None = None, weight_decay: float = 0.05,
                 optimizer: str = "AdamW", optimizer_args: dict[str, Any] | None = None, schedule: str = "cosine",
                 warmup_epochs: float = 0.0, warmup_steps: int = 0, min_lr_ratio: float = 0.01,
                 poly_power: float = 1.0, ema_decay: float | None = None, ema_warmup: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.check_arguments()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def check_arguments(self) -> None:
        """Bad settings are errors here, before any network is built."""
        name, hp = type(self).__name__, self.hparams
        for key in self.data_links:
            if hp.get(key) is None:
                raise ValueError(f"{name}: {key} is needed. The `gspn` command takes it from the data module "
                                 f"(give the data module a `{key}` attribute); in Python, pass {key}=...")
        if hp.schedule not in SCHEDULES:
            raise ValueError(f"{name}: schedule must be one of {SCHEDULES}, got {hp.schedule!r}")
        if hp.warmup_epochs and hp.warmup_steps:
            raise ValueError(f"{name}: give warmup_epochs or warmup_steps, not both "
                             f"(got {hp.warmup_epochs} and {hp.warmup_steps})")
        optimizer_class(hp.optimizer)

    # The hooks a task fills.
    def configure_models(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must build its networks in configure_models()")

    def configure_losses(self) -> None:
        pass

    def configure_metrics(self) -> None:
        pass

    def write_prediction(self, prediction: Any, output_dir: Path) -> None:
        """Write one batch of `predict_step` outputs as files under output_dir (`gspn predict`)."""
        raise NotImplementedError(f"{type(self).__name__} does not write predictions")

    def forward(self, *args, **kwargs) -> Any:
        return self.model(*args, **kwargs)

    def configure_callbacks(self) -> list[Callback]:
        if self.trainer.state.fn != "fit":
            return []
        callbacks = [LearningRateMonitor(logging_interval="step")] if self.trainer.loggers else []
        if self.hparams.ema_decay:  # training only; afterwards the checkpoint's weights are the average
            callbacks.append(EMA(self.hparams.ema_decay, self.hparams.ema_warmup))
        return callbacks

    # Optimisation.
    def peak_lr(self) -> float:
        if self.hparams.lr_batch_size is None:
            return self.hparams.lr
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)
        if batch_size is None:
            raise ValueError(f"{type(self).__name__}: lr_batch_size needs a data module with a `batch_size` attribute")
        effective = batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches
        lr = self.hparams.lr * effective / self.hparams.lr_batch_size
        rank_zero_info(f"learning rate {self.hparams.lr:g} x {effective} / {self.hparams.lr_batch_size} = {lr:g}")
        return lr

    def total_steps(self) -> int | None:
        """Optimiser steps of the whole run, or None when the run has no end (max_steps and max_epochs -1)."""
        total = self.trainer.estimated_stepping_batches
        return None if math.isinf(total) else int(total)

    def steps_per_epoch(self) -> int:
        trainer = self.trainer
        if math.isinf(trainer.num_training_batches):  # not counted yet when only max_steps is set
            trainer.fit_loop.setup_data()
        return max(math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches), 1)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = optimizer_class(hp.optimizer)(parameter_groups(self, hp.weight_decay), lr=self.peak_lr(),
                                                  **(hp.optimizer_args or {}))
        total = self.total_steps()
        if total is None and hp.schedule != "constant":
            raise ValueError(f"{type(self).__name__}: the {hp.schedule} schedule needs an end: set "
                             "trainer.max_steps or trainer.max_epochs, or use schedule: constant")
        warmup = round(hp.warmup_epochs * self.steps_per_epoch()) if hp.warmup_epochs else hp.warmup_steps
        factor = dict(warmup_steps=warmup, total_steps=total, schedule=hp.schedule, min_lr_ratio=hp.min_lr_ratio,
                      power=hp.poly_power)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, **factor))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Lightning does not checkpoint the global RNGs. Reseeding them from (seed, epoch, batch, rank)
        # gives every step the same mixup, drop path, dropout and noise whether the run was resumed
        # (at an epoch end or mid-epoch) or not. The batch counter survives a mid-epoch restart.
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            batch = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
            seed_all(np.random.SeedSequence([int(seed), self.current_epoch, batch, self.global_rank]))
