"""The reference as a backend: runs on any device, low-precision inputs computed in float32."""

import torch

from . import reference

LOW_PRECISION = (torch.float16, torch.bfloat16)


def unavailable_reason(device: torch.device) -> str | None:
    return None


def in_float32_if_low_precision(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """float16/bfloat16 inputs upcast, so every backend accumulates in at least float32."""
    return [t.float() for t in tensors] if tensors[0].dtype in LOW_PRECISION else list(tensors)


def forward(x, lam, a, b, c, direction, chunk):
    return reference.forward(*in_float32_if_low_precision(x, lam, a, b, c), direction, chunk).to(x.dtype)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    grads = reference.backward(*in_float32_if_low_precision(dh, x, lam, a, b, c, h), direction, chunk)
    return tuple(g.to(x.dtype) for g in grads)
