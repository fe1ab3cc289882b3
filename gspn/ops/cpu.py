"""The C++ CPU kernels (csrc/cpu): the single-direction scan and the fused mixer propagation.

Built with ninja on first use; float16/bfloat16 run in float32."""

import torch

from . import build
from .mixer_reference import compute_dtype
from .reference_backend import in_float32_if_low_precision

SOURCES = ("cpu/propagate_cpu.cpp", "cpu/mixer_cpu.cpp")


def unavailable_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"the cpu kernels take cpu tensors, not {device.type}"
    return build.load_extension("gspn_cpu", SOURCES, extra_cflags=("-O3", "-fopenmp", "-fno-trapping-math"), extra_ldflags=("-fopenmp",))


def forward(x, lam, a, b, c, direction, chunk):
    h = torch.ops.gspn_cpu.forward(*in_float32_if_low_precision(x, lam, a, b, c), direction, chunk)
    return h.to(x.dtype)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    grads = torch.ops.gspn_cpu.backward(*in_float32_if_low_precision(dh, x, lam, a, b, c, h), direction, chunk)
    return tuple(g.to(x.dtype) for g in grads)



def _compute(t, dtype):
    return None if t is None else t.to(dtype).contiguous()


def mixer_forward(x, params, merge, proj, groups, chunk, skip, save_states):
    """The fused four-direction mixer propagation (csrc/cpu/mixer_cpu.cpp); see gspn.ops.mixer."""
    dtype = compute_dtype(x.dtype)
    y, states = torch.ops.gspn_cpu.mixer_forward(_compute(x, dtype), _compute(params, dtype), _compute(merge, dtype),
                                                 _compute(proj, dtype), groups, chunk, skip, save_states)
    return y.to(x.dtype), states


def mixer_backward(gy, x, params, merge, proj, states, groups, chunk, skip):
    dtype = compute_dtype(x.dtype)
    dx, dparams, dmerge, dproj = torch.ops.gspn_cpu.mixer_backward(
        _compute(gy, dtype), _compute(x, dtype), _compute(params, dtype), _compute(merge, dtype),
        _compute(proj, dtype), states, groups, chunk, skip)
    return (dx.to(x.dtype), dparams.to(params.dtype), dmerge.to(merge.dtype),
            dproj.to(proj.dtype) if proj is not None else dproj)
