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
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.optim.lr_scheduler import LambdaLR

from gspn.errors import ConfigError, NonFiniteError

from .ema import EMA
from .optim import SCHEDULES, lr_factor, optimizer_class, parameter_groups
from .report import RunReport


def seed_all(seed_sequence: np.random.SeedSequence) -> None:
    python_seed, numpy_seed, torch_seed = seed_sequence.generate_state(3)
    random.seed(int(python_seed))
    np.random.seed(int(numpy_seed))
    torch.manual_seed(int(torch_seed))


class BaseTask(LightningModule):
    """The training settings every task shares: optimiser, learning-rate schedule, EMA, non-finite steps.

    A task passes them on through its **kwargs, so they are options of every task.

    Args:
        lr: the peak learning rate, for `lr_batch_size` samples per step if that is given.
        lr_batch_size: the batch size `lr` is meant for (None: lr is used as it is). When given, the rate
            used is lr * effective batch / lr_batch_size, with effective batch = the data module's
            batch_size * devices * nodes * accumulate_grad_batches.
        weight_decay: on weights of two or more dimensions only (not on norms, biases, scalars).
        optimizer: a class of torch.optim by name (AdamW, SGD, ...) or a dotted class path.
        optimizer_args: its other arguments, e.g. {betas: [0.9, 0.999]} or {momentum: 0.9, nesterov: true}.
        schedule: after warm-up, "cosine" or "poly" down to min_lr_ratio * the peak at the last
            step (max_steps, or max_epochs worth of steps), or "constant".
        warmup_epochs: linear warm-up in epochs (may be fractional); give this or warmup_steps, not both.
        warmup_steps: linear warm-up in optimiser steps; give this or warmup_epochs, not both.
        min_lr_ratio: where the cosine or polynomial ends, as a fraction of the peak.
        poly_power: the exponent of the polynomial decay (1.0: linear, the segmentation recipe).
        ema_decay: keep an EMA of the weights with this decay; validation, checkpoints and
            `load_checkpoint` then use the averaged weights.
        ema_warmup: ramp the EMA decay up as min(ema_decay, (1 + n) / (10 + n)) over the first n updates.
        nonfinite: what a step with a non-finite loss or gradient does: "stop" the run with an error naming
            the step and its batch (checkpoints already written stay as they are), or "skip" the step
            (the weights and optimiser state stay unchanged; skipped steps are counted and reported at
            the end). Under precision 16-mixed the gradient scaler owns overflowing gradients; only the
            loss is checked there.
    """

    monitor: ClassVar[str] = "val_loss"  # the metric that selects the best checkpoint
    monitor_mode: ClassVar[str] = "min"
    data_links: ClassVar[tuple[str, ...]] = ()  # arguments the `gspn` command takes from the data module
    # arguments that evaluation and prediction take from the command line rather than the checkpoint
    inference_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float = 1e-3, lr_batch_size: int | None = None, weight_decay: float = 0.05,
                 optimizer: str = "AdamW", optimizer_args: dict[str, Any] | None = None,
                 schedule: Literal["cosine", "poly", "constant"] = "cosine",
                 warmup_epochs: float = 0.0, warmup_steps: int = 0, min_lr_ratio: float = 0.01,
                 poly_power: float = 1.0, ema_decay: float | None = None, ema_warmup: bool = True,
                 nonfinite: Literal["stop", "skip"] = "stop"):
        super().__init__()
        self.save_hyperparameters()
        self.skipped_steps: list[int] = []
        self.planned_steps: int | None = None  # the total of the run a resumed checkpoint belongs to
        self.check_arguments()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def check_arguments(self) -> None:
        """Bad settings are errors here, before any network is built."""
        name, hp = type(self).__name__, self.hparams
        for key in self.data_links:
            if hp.get(key) is None:
                raise ConfigError(f"{name}: {key} is needed. The `gspn` command takes it from the data module "
                                  f"(give the data module a `{key}` attribute); in Python, pass {key}=...")
        if hp.schedule not in SCHEDULES:
            raise ConfigError(f"{name}: schedule must be one of {SCHEDULES}, got {hp.schedule!r}")
        if hp.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"{name}: nonfinite must be 'stop' or 'skip', got {hp.nonfinite!r}")
        if hp.warmup_epochs and hp.warmup_steps:
            raise ConfigError(f"{name}: give warmup_epochs or warmup_steps, not both "
                              f"(got {hp.warmup_epochs} and {hp.warmup_steps})")
        optimizer_class(hp.optimizer)

    # The hooks a task fills.
    def configure_models(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must build its networks in configure_models()")

    def configure_losses(self) -> None:
        pass

    def configure_metrics(self) -> None:
        pass

    def start_prediction(self, output_dir: Path) -> None:
        """Remove this task's outputs of an earlier `gspn predict` from output_dir (before predicting)."""

    def write_prediction(self, prediction: Any, output_dir: Path) -> None:
        """Write one batch of `predict_step` outputs as files under output_dir (`gspn predict`)."""
        raise NotImplementedError(f"{type(self).__name__} does not write predictions")

    def finish_prediction(self, output_dir: Path) -> None:
        """Complete what write_prediction wrote (after the last batch of `gspn predict`)."""

    def forward(self, *args, **kwargs) -> Any:
        return self.model(*args, **kwargs)

    # Networks kept outside the module tree (neither trained nor saved: an autoencoder, a judge, a teacher)
    # follow the task to its device.
    def frozen_helpers(self) -> Iterable[torch.nn.Module]:
        return ()

    def helpers_to_device(self) -> None:
        for helper in self.frozen_helpers():
            helper.to(self.device)

    def on_fit_start(self) -> None:
        self.helpers_to_device()

    def on_validation_start(self) -> None:
        self.helpers_to_device()

    def on_predict_start(self) -> None:
        self.helpers_to_device()

    def configure_callbacks(self) -> list[Callback]:
        if self.trainer.state.fn != "fit":
            return []
        callbacks = [RunReport()] + ([LearningRateMonitor(logging_interval="step")] if self.trainer.loggers else [])
        if self.hparams.ema_decay:  # training only; afterwards the checkpoint's weights are the average
            callbacks.append(EMA(self.hparams.ema_decay, self.hparams.ema_warmup))
        return callbacks

    # Optimisation.
    def peak_lr(self) -> float:
        if self.hparams.lr_batch_size is None:
            return self.hparams.lr
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)
        if batch_size is None:
            raise ConfigError(f"{type(self).__name__}: lr_batch_size needs a data module with a `batch_size` attribute")
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
            raise ConfigError(f"{type(self).__name__}: the {hp.schedule} schedule needs an end: set "
                              "trainer.max_steps or trainer.max_epochs, or use schedule: constant")
        if hp.schedule != "constant" and self.planned_steps not in (None, total):
            rank_zero_warn(f"the run resumed was planned for {self.planned_steps:,} steps and now has {total:,}: "
                           f"its {hp.schedule} learning-rate schedule is recomputed for {total:,} steps, so the rate "
                           "differs from the first step on (schedule: constant keeps it)")
        warmup = round(hp.warmup_epochs * self.steps_per_epoch()) if hp.warmup_epochs else hp.warmup_steps
        factor = dict(warmup_steps=warmup, total_steps=total, schedule=hp.schedule, min_lr_ratio=hp.min_lr_ratio,
                      power=hp.poly_power)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, **factor))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # Non-finite steps.
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        def checked_closure():
            loss = optimizer_closure()
            self.check_finite(loss, epoch, batch_idx, optimizer)
            return loss

        optimizer.step(closure=checked_closure)

    def check_finite(self, loss: torch.Tensor | None, epoch: int, batch_idx: int, optimizer) -> None:
        """After the backward, before the optimiser: stop or skip (see `nonfinite`) a step whose loss or
        gradients hold NaN or infinity."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        grads = {name: p.grad for name, p in self.named_parameters() if p.grad is not None}
        bad_loss = loss is not None and not bool(torch.isfinite(loss).all())
        bad_grads = []
        if scaler is None and grads:
            finite = torch.stack([g.detach().float().norm() for g in grads.values()]).isfinite().tolist()
            bad_grads = [name for name, ok in zip(grads, finite) if not ok]
        if not (bad_loss or bad_grads):
            return
        step = self.trainer.global_step + 1
        what = (f"loss {loss.item()}" if bad_loss else "") + (" and " if bad_loss and bad_grads else "") + \
            (f"non-finite gradients in {len(bad_grads)} tensors ({', '.join(bad_grads[:3])}"
             f"{', ...' if len(bad_grads) > 3 else ''})" if bad_grads else "")
        if self.hparams.nonfinite == "skip":
            self.skipped_steps.append(step)
            if scaler is None:  # parameters without a gradient are left alone by torch's optimisers
                for group in optimizer.param_groups:
                    for parameter in group["params"]:
                        parameter.grad = None
            return
        data = self.trainer.datamodule
        batch = data.describe_training_batch(epoch, batch_idx) if hasattr(data, "describe_training_batch") else ""
        raise NonFiniteError(f"step {step:,} (epoch {epoch}, batch {batch_idx}): {what}. "
                             + (f"The batch: {batch}. " if batch else "")
                             + "The checkpoints written so far are untouched; to skip such steps instead, set "
                               "--model.init_args.nonfinite skip")

    def on_train_end(self) -> None:
        if self.skipped_steps:
            shown = ", ".join(map(str, self.skipped_steps[:20])) + (", ..." if len(self.skipped_steps) > 20 else "")
            rank_zero_warn(f"skipped {len(self.skipped_steps)} steps with a non-finite loss or gradients: {shown}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["skipped_steps"] = list(self.skipped_steps)
        if self.trainer.state.fn == "fit":
            checkpoint["planned_steps"] = self.total_steps()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = list(checkpoint.get("skipped_steps", []))
        self.planned_steps = checkpoint.get("planned_steps")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Lightning does not checkpoint the global RNGs. Reseeding them from (seed, epoch, batch, rank)
        # gives every step the same mixup, drop path, dropout and noise whether the run was resumed
        # (at an epoch end or mid-epoch) or not. The batch counter survives a mid-epoch restart.
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            batch = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready
            seed_all(np.random.SeedSequence([int(seed), self.current_epoch, batch, self.global_rank]))
