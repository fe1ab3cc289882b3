"""The C++ CPU kernels (csrc/cpu), built with ninja on first use; float16/bfloat16 run in float32."""

import torch

from . import build
from .reference_backend import in_float32_if_low_precision

SOURCES = ("cpu/propagate_cpu.cpp",)


def unavailable_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"the cpu kernels take cpu tensors, not {device.type}"
    return build.load_extension("gspn_cpu", SOURCES, extra_cflags=("-O3", "-fopenmp"), extra_ldflags=("-fopenmp",))


def forward(x, lam, a, b, c, direction, chunk):
    h = torch.ops.gspn_cpu.forward(*in_float32_if_low_precision(x, lam, a, b, c), direction, chunk)
    return h.to(x.dtype)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    grads = torch.ops.gspn_cpu.backward(*in_float32_if_low_precision(dh, x, lam, a, b, c, h), direction, chunk)
    return tuple(g.to(x.dtype) for g in grads)
