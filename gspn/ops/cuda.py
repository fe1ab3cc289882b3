"""The CUDA kernels (csrc/cuda), built with ninja on first use; float32/64, float16 and bfloat16 natively.

A shape the kernels cannot take (a cross axis too long for one block's shared memory, the same limit
for forward and backward) runs on the reference instead, with one warning.
"""

import dataclasses
import functools
import warnings

import torch

from . import build, launch_plan, reference_backend

# The headers of csrc/cuda are not listed: torch has nvcc write depfiles (-MD), so ninja rebuilds on a change.
SOURCES = ("cuda/binding.cpp", "cuda/propagate_kernels.cu")
CUDA_FLAGS = ("-O3", "-lineinfo")
_warned = False


def unavailable_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"the cuda kernels take cuda tensors, not {device.type}"
    if torch.version.cuda is None:
        return "torch was built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return build.load_extension("gspn_cuda", SOURCES, extra_cflags=("-O3",), extra_cuda_cflags=CUDA_FLAGS)


@functools.cache
def _device_limits(index: int) -> launch_plan.Device:
    props = torch.cuda.get_device_properties(index)
    optin = getattr(props, "shared_memory_per_block_optin", launch_plan.H100.shared_optin)
    return dataclasses.replace(launch_plan.H100, name=props.name, sms=props.multi_processor_count,
                               shared_optin=optin)


def kernels_take(x: torch.Tensor, a: torch.Tensor, direction: str, device: launch_plan.Device | None = None) -> bool:
    """Whether the kernels have a launch plan for this problem (forward and backward alike)."""
    if device is None:
        device = _device_limits(x.device.index if x.device.index is not None else torch.cuda.current_device())
    B, C, H, W = x.shape
    if 0 in x.shape:
        return True
    acc = 8 if x.dtype == torch.float64 else 4
    element = launch_plan.element_size(x.dtype)
    return launch_plan.make_plan(B, C, a.shape[1], H, W, direction, None, acc, False, device, element) is not None


def _fallback(x, direction) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"gspn: the CUDA kernels cannot take shape {tuple(x.shape)} with direction {direction!r} "
                      "(the cross axis is too long for one block's shared memory); running the pure-PyTorch "
                      "reference for such shapes instead (warned once).", RuntimeWarning, stacklevel=3)


def forward(x, lam, a, b, c, direction, chunk):
    if not kernels_take(x, a, direction):
        _fallback(x, direction)
        return reference_backend.forward(x, lam, a, b, c, direction, chunk)
    return torch.ops.gspn_cuda.forward(x, lam, a, b, c, direction, chunk)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    if not kernels_take(x, a, direction):
        _fallback(x, direction)
        return reference_backend.backward(dh, x, lam, a, b, c, h, direction, chunk)
    return torch.ops.gspn_cuda.backward(dh, x, lam, a, b, c, h, direction, chunk)
