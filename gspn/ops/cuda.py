"""The CUDA kernels (csrc/cuda), built with ninja on first use; float32/64, float16 and bfloat16 natively."""

import torch

from . import build

SOURCES = ("cuda/binding.cpp", "cuda/propagate_kernels.cu")
CUDA_FLAGS = ("-O3", "-lineinfo")


def unavailable_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"the cuda kernels take cuda tensors, not {device.type}"
    if torch.version.cuda is None:
        return "torch was built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return build.load_extension("gspn_cuda", SOURCES, extra_cflags=("-O3",), extra_cuda_cflags=CUDA_FLAGS)


def forward(x, lam, a, b, c, direction, chunk):
    return torch.ops.gspn_cuda.forward(x, lam, a, b, c, direction, chunk)


def backward(dh, x, lam, a, b, c, h, direction, chunk):
    return torch.ops.gspn_cuda.backward(dh, x, lam, a, b, c, h, direction, chunk)
