"""The shared base of every task's LightningModule.

A task builds its network and hands it to `BaseTask.__init__` as `model` (the module that is
optimised and averaged), then adds its losses and metrics and the step methods. The base provides
AdamW with parameter groups, a per-step cosine schedule with linear warm-up, an optional EMA of the
model for evaluation, and per-step reseeding so that a run resumed from a checkpoint continues
exactly.
"""

import copy
import math
import os
import random

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases, scalars (every parameter of at most one
    dimension) and the names that any submodule lists in its `no_weight_decay()`."""
    exempt = set()
    for prefix, submodule in module.named_modules():
        if callable(getattr(submodule, "no_weight_decay", None)):
            exempt |= {f"{prefix}.{name}" if prefix else name for name in submodule.no_weight_decay()}
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 or name in exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate factor: linear from 1 / warmup_steps to 1, then a cosine down to min_lr_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ExponentialMovingAverage(nn.Module):
    """An EMA copy of a model's parameters and buffers. Its decay ramps up as min(decay, (1 + n) / (10 + n))
    over the first updates n, so short runs do not average over their random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        n = self.updates.item()
        decay = min(self.decay, (1 + n) / (10 + n))
        for average, current in zip(self.model.state_dict().values(), model.state_dict().values()):
            if average.is_floating_point():
                average.lerp_(current.detach(), 1 - decay)
            else:
                average.copy_(current)


def seed_all(seed_sequence: np.random.SeedSequence) -> None:
    python_seed, numpy_seed, torch_seed = seed_sequence.generate_state(3)
    random.seed(int(python_seed))
    np.random.seed(int(numpy_seed))
    torch.manual_seed(int(torch_seed))


class BaseTask(LightningModule):
    """Args:
        model: the task's network, built by the subclass.
        lr: the peak learning rate, for `lr_batch_size` images per step if that is given: the rate
            used is then lr * effective batch / lr_batch_size, with effective batch = the data
            module's batch_size * devices * nodes * accumulate_grad_batches.
        weight_decay: AdamW's, on weights of two or more dimensions only.
        warmup_epochs: linear warm-up length (may be fractional), counted in optimiser steps.
        min_lr_ratio: the cosine ends at min_lr_ratio * the peak rate.
        ema_decay: keep an EMA of the model's weights with this decay and evaluate with it.
    """

    monitor = "val_loss"  # the metric that selects the best checkpoint
    monitor_mode = "min"

    def __init__(self, model: nn.Module, lr: float = 1e-3, lr_batch_size: int | None = None, weight_decay: float = 0.05,
                 warmup_epochs: float = 0.0, min_lr_ratio: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                 ema_decay: float | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.ema = ExponentialMovingAverage(self.model, ema_decay) if ema_decay else None

    @property
    def eval_model(self) -> nn.Module:
        """The network for validation, test and prediction: the EMA copy when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model if self.training else self.eval_model)(x)

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

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(parameter_groups(self, self.hparams.weight_decay), lr=self.peak_lr(),
                                      betas=self.hparams.betas)
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        warmup_steps = round(self.hparams.warmup_epochs * steps_per_epoch)
        schedule = LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps,
                                                                   self.hparams.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.model)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Lightning does not checkpoint the global RNGs. Reseeding them from (seed, epoch, batch, rank)
        # gives every step the same mixup, drop path and dropout whether the run was resumed or not.
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            seed_all(np.random.SeedSequence([int(seed), self.current_epoch, batch_idx, self.global_rank]))
