"""Optimiser and learning-rate schedule of every task: parameter groups, a torch.optim class by name,
and a per-step factor (linear warm-up, then cosine, polynomial or constant)."""

import math

import torch
from torch import nn

from gspn.dotted import import_object
from gspn.errors import ConfigError

SCHEDULES = ("cosine", "poly", "constant")


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: no weight decay on norms, biases, scalars (every parameter of at most one
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


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """A class of torch.optim by name ("AdamW", "SGD", ...) or any optimiser by dotted path."""
    found = import_object(name) if "." in name else getattr(torch.optim, name, None)
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer: expected a class of torch.optim (AdamW, SGD, ...) or a dotted path to an "
                          f"optimiser class, got {name!r}")
    return found


def lr_factor(step: int, *, warmup_steps: int, total_steps: int | None, schedule: str, min_lr_ratio: float,
              power: float = 1.0) -> float:
    """The learning rate at `step` as a fraction of the peak: linear from 1 / warmup_steps to 1, then
    down to min_lr_ratio at total_steps by a cosine or a polynomial of `power` (1.0: linear), or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else (1 - progress) ** power
    return min_lr_ratio + (1 - min_lr_ratio) * shape
