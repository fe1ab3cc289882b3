"""The reference as a backend: runs on any device, low-precision inputs computed in float32."""

import torch

from . import reference

LOW_PRECISION = (torch.float16, torch.bfloat16)


def unavailable_reason(device: torch.device) -> str | None:
    return None


def _compute_dtype(*tensors: torch.Tensor):
    dtype = tensors[0].dtype
    if dtype in LOW_PRECISION:
        return dtype, [t.float() for t in tensors]
    return dtype, list(tensors)


def forward(x, lam, a, b, c, direction, chunk):
    dtype, args = _compute_dtype(x, lam, a, b, c)
    return reference.forward(*args, direction, chunk).to(dtype)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    dtype, args = _compute_dtype(dh, x, lam, a, b, c, h)
    return tuple(g.to(dtype) for g in reference.backward(*args, direction, chunk))
