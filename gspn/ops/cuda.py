"""The cuda kernels (in progress)."""

import torch


def unavailable_reason(device: torch.device) -> str | None:
    return "the cuda kernels are not part of this build yet"
