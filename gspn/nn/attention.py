"""Multi-head self-attention over the tokens of a (B, C, H, W) map, and the fixed 2D sin-cos position
embedding that attention needs (it is blind to where a token sits; GSPN's scans are not): the
control that GSPN mixers are compared against.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """qkv, torch's scaled_dot_product_attention over all H * W tokens, proj."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"SelfAttention: heads must be a positive divisor of the width {dim}, got {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).view(B, H * W, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H * W, C)
        return self.proj(y).transpose(1, 2).reshape(B, C, H, W)


def sincos_position_2d(dim: int, height: int, width: int, max_period: float = 10000.0) -> Tensor:
    """(dim, height, width): the first half of the channels encodes the row, the second the column,
    each as sines then cosines of the integer position at geometric frequencies (as DiT's)."""
    if dim % 4:
        raise ValueError(f"sincos_position_2d: dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = torch.exp(-math.log(max_period) * torch.arange(quarter) / quarter)

    def encode(n: int) -> Tensor:  # (n, dim / 2)
        angles = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows = encode(height)[:, None, :].expand(height, width, -1)
    cols = encode(width)[None, :, :].expand(height, width, -1)
    return torch.cat([rows, cols], dim=-1).permute(2, 0, 1)
