"""The C++ CPU kernels (csrc/cpu): the single-direction scan and the fused mixer propagation.

Built with ninja on first use; float16/bfloat16 run in float32."""

import torch

from . import build
from .precision import in_compute_dtype

# The two ops' translation units; the headers they include need no listing: ninja's depfiles rebuild on a change.
SOURCES = ("cpu/propagate_cpu.cpp", "cpu/mixer_cpu.cpp")


def unavailable_reason(device: torch.device) -> str | None:
    if device.type != "cpu":
        return f"the cpu kernels take cpu tensors, not {device.type}"
    return build.load_extension("gspn_cpu", SOURCES, extra_cflags=("-O3", "-fopenmp", "-fno-trapping-math"), extra_ldflags=("-fopenmp",))


def forward(x, lam, a, b, c, direction, chunk):
    return in_compute_dtype(lambda *t: torch.ops.gspn_cpu.forward(*t, direction, chunk), x, lam, a, b, c)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    return in_compute_dtype(lambda *t: torch.ops.gspn_cpu.backward(*t, direction, chunk), dh, x, lam, a, b, c, h)


def mixer_forward(x, params, merge, proj, groups, chunk, skip, save_states):
    """The fused four-direction mixer propagation (csrc/cpu/mixer_kernels.h); see gspn.ops.mixer."""
    return in_compute_dtype(lambda *t: torch.ops.gspn_cpu.mixer_forward(*t, groups, chunk, skip, save_states),
                            x, params, merge, proj, cast_back=(x.dtype, None))


def mixer_backward(gy, x, params, merge, proj, states, groups, chunk, skip):
    def kernel(x, gy, params, merge, proj):
        return torch.ops.gspn_cpu.mixer_backward(gy, x, params, merge, proj, states, groups, chunk, skip)

    return in_compute_dtype(kernel, x, gy, params, merge, proj,
                            cast_back=(x.dtype, params.dtype, merge.dtype, None if proj is None else proj.dtype))
