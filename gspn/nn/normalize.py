"""The Stability-Context Condition (docs/design.md §1.2): weight logits to row-stochastic tridiagonal weights."""

import torch
from torch import Tensor


def stochastic_normalize(a: Tensor, b: Tensor, c: Tensor, cross_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sigmoid each logit and divide by the sum of the three, along the cross axis `cross_dim`.

    `a` links to the lower-index neighbour on the cross axis and `c` to the higher one, so at the first
    cross position `a` points outside the map and at the last `c` does: those weights are zero and are
    left out of the sum. Every row of the resulting tridiagonal matrix sums to one. Computed in float32.
    """
    n = a.shape[cross_dim]
    index = torch.arange(n, device=a.device).view([n if d == cross_dim % a.dim() else 1 for d in range(a.dim())])
    sa = torch.sigmoid(a.float()) * (index > 0)
    sb = torch.sigmoid(b.float())
    sc = torch.sigmoid(c.float()) * (index < n - 1)
    total = sa + sb + sc
    return sa / total, sb / total, sc / total
