"""Parameter and MAC counts of a model, from torch.utils.flop_counter on the meta device.

MACs are FlopCounterMode's FLOPs / 2: convolutions and matmuls, and the propagation op at 4 MACs
per output element (gspn/ops/flops.py). Element-wise work (norms, activations, gates) is not counted.
"""

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..ops import flops as _flops  # noqa: F401  (the op's formula)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """MACs of one forward pass on one input of `input_size` (C, H, W), or (B, C, H, W) for a batch.

    Runs a copy of the model on the meta device: no memory for activations, no arithmetic.
    """
    shape = tuple(input_size) if len(input_size) == 4 else (1, *input_size)
    meta = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return counter.get_total_flops() // 2


def model_summary(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), *, show: bool = True) -> dict:
    """{"params": ..., "macs": ...} for one forward pass at `input_size`; printed unless `show` is False."""
    summary = {"params": count_params(model), "macs": count_macs(model, input_size)}
    if show:
        print(f"{type(model).__name__}: {summary['params'] / 1e6:.2f}M parameters, "
              f"{summary['macs'] / 1e9:.2f} GMACs at {'x'.join(map(str, input_size))}")
    return summary
