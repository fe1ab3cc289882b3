"""FLOP formulas for the propagation op, so torch.utils.flop_counter.FlopCounterMode counts it.

Counted as multiply-accumulates (MACs), reported as FLOPs = 2 * MACs like matmul and conv:
- forward: 4 MACs per output element (lam * x plus three neighbour terms);
- backward: 8 MACs per element (three neighbour terms of the reverse scan, dx, dlam, da, db, dc).
The weights' loads and the boundary terms that are skipped are not counted. Importing this
module registers the formulas (gspn.models does); torch.ops.gspn.* exist once gspn.ops is imported.
"""

import math

import torch
from torch.utils.flop_counter import register_flop_formula

FORWARD_MACS_PER_ELEMENT = 4
BACKWARD_MACS_PER_ELEMENT = 8


@register_flop_formula(torch.ops.gspn.propagate)
def propagate_flop(x_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * FORWARD_MACS_PER_ELEMENT * math.prod(x_shape)


@register_flop_formula(torch.ops.gspn.propagate_backward)
def propagate_backward_flop(dh_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * BACKWARD_MACS_PER_ELEMENT * math.prod(dh_shape)


# The fused mixer op (gspn.ops.mixer) counts four scans at 4 MACs per element (as four `propagate`
# calls count), the merge of the four directions (4 MACs per output element) and, with `proj`, the
# 1x1 projection it applies per pixel (4Q * R MACs).
MIXER_FORWARD_MACS_PER_ELEMENT = 4 * FORWARD_MACS_PER_ELEMENT + 4
MIXER_BACKWARD_MACS_PER_ELEMENT = 4 * BACKWARD_MACS_PER_ELEMENT + 8


def _projection_macs(x_shape, proj_shape) -> int:
    if proj_shape is None:
        return 0
    B, _, H, W = x_shape
    return B * H * W * math.prod(proj_shape)


@register_flop_formula(torch.ops.gspn.mixer_propagate)
def mixer_propagate_flop(x_shape, params_shape, merge_shape, proj_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * (MIXER_FORWARD_MACS_PER_ELEMENT * math.prod(x_shape) + _projection_macs(x_shape, proj_shape))


@register_flop_formula(torch.ops.gspn.mixer_propagate_backward)
def mixer_propagate_backward_flop(gy_shape, x_shape, params_shape, merge_shape, proj_shape, *args, out_shape=None,
                                  **kwargs) -> int:
    return 2 * (MIXER_BACKWARD_MACS_PER_ELEMENT * math.prod(x_shape) + 2 * _projection_macs(x_shape, proj_shape))
