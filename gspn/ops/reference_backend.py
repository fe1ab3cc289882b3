"""The reference as a backend: runs on any device, low-precision inputs computed in float32."""

import torch

from . import reference
from .precision import in_compute_dtype


def unavailable_reason(device: torch.device) -> str | None:
    return None


def forward(x, lam, a, b, c, direction, chunk):
    return in_compute_dtype(lambda *t: reference.forward(*t, direction, chunk), x, lam, a, b, c)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    return in_compute_dtype(lambda *t: reference.backward(*t, direction, chunk), dh, x, lam, a, b, c, h)
