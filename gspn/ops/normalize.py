"""The Stability-Context Condition (docs/design.md §1.2): weight logits to row-stochastic tridiagonal
weights, and the gradient of the logits from that of the weights."""

import torch
from torch import Tensor

from .precision import compute_dtype


def _border_masks(la: Tensor, cross_dim: int) -> tuple[Tensor, Tensor]:
    """1 where the lower (first mask) or higher (second) neighbour on the cross axis exists, else 0."""
    dim = cross_dim % la.dim()
    n = la.shape[dim]
    index = torch.arange(n, device=la.device).view([n if i == dim else 1 for i in range(la.dim())])
    return (index > 0).to(la.dtype), (index < n - 1).to(la.dtype)


def stochastic_normalize(la: Tensor, lb: Tensor, lc: Tensor, cross_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sigmoid each logit and divide by the sum of the three, along the cross axis `cross_dim`.

    `a` links to the lower-index neighbour on the cross axis and `c` to the higher one, so at the first
    cross position `a` points outside the map and at the last `c` does: those weights are zero and are
    left out of the sum. Every row of the resulting tridiagonal matrix sums to one. Computed in the
    compute dtype (gspn.ops.precision: float32 for low-precision logits); contiguous results.
    """
    la, lb, lc = (t.to(compute_dtype(la.dtype)) for t in (la, lb, lc))
    first, last = _border_masks(la, cross_dim)
    sa, sb, sc = torch.sigmoid(la) * first, torch.sigmoid(lb), torch.sigmoid(lc) * last
    total = sa + sb + sc
    return (sa / total).contiguous(), (sb / total).contiguous(), (sc / total).contiguous()


def stochastic_normalize_backward(da: Tensor, db: Tensor, dc: Tensor, la: Tensor, lb: Tensor, lc: Tensor,
                                  cross_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the logits from those of the normalised weights (w_i = s_i / S):
    dS_i = (dw_i - sum_j dw_j w_j) / S, and d logit_i = dS_i * s'(logit_i), zero where masked."""
    first, last = _border_masks(la, cross_dim)
    ga, gb, gc = torch.sigmoid(la), torch.sigmoid(lb), torch.sigmoid(lc)
    sa, sb, sc = ga * first, gb, gc * last
    total = sa + sb + sc
    mean = (da * sa + db * sb + dc * sc) / total
    return ((da - mean) / total * ga * (1 - ga) * first, (db - mean) / total * gb * (1 - gb),
            (dc - mean) / total * gc * (1 - gc) * last)
