"""The cpu kernels (in progress)."""

import torch


def unavailable_reason(device: torch.device) -> str | None:
    return "the cpu kernels are not part of this build yet"
