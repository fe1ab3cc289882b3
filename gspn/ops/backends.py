"""The backends of the propagation op and the choice between them.

Each backend module offers `unavailable_reason(device) -> str | None` (None when usable; may build
kernels on first call), `forward(x, lam, a, b, c, direction, chunk)` and
`backward(dh, x, lam, a, b, c, h, direction, chunk)` on contiguous tensors, chunk 0 meaning global.
"""

import os
from types import ModuleType

import torch

from . import cpu, cuda, reference_backend
from .checks import BACKEND_NAMES

BACKENDS: dict[str, ModuleType] = {"reference": reference_backend, "cpu": cpu, "cuda": cuda}
ENV_VAR = "GSPN_BACKEND"


def resolve(requested: str, device: torch.device) -> ModuleType:
    """The backend to run: the one requested (argument, else $GSPN_BACKEND), else the fastest usable."""
    name = requested or os.environ.get(ENV_VAR, "")
    if name:
        if name not in BACKEND_NAMES:
            raise ValueError(f"${ENV_VAR} must be one of {BACKEND_NAMES}, got {name!r}")
        reason = BACKENDS[name].unavailable_reason(device)
        if reason is not None:
            raise RuntimeError(f"propagate: backend {name!r} cannot run on {device}: {reason}")
        return BACKENDS[name]
    preferred = {"cpu": "cpu", "cuda": "cuda"}.get(device.type)
    if preferred is not None and BACKENDS[preferred].unavailable_reason(device) is None:
        return BACKENDS[preferred]
    return reference_backend


def available_backends(device: torch.device) -> list[str]:
    return [name for name, mod in BACKENDS.items() if mod.unavailable_reason(device) is None]
