"""The module that takes the place of a Stable Diffusion self-attention layer (`attn1`).

diffusers hands `attn1` the tokens (B, T, C) of a (B, C, H, W) map without H and W; the converted
UNet's hooks (gspn/t2i/convert.py) set `hw` before each call, so any aspect ratio and odd sizes work.
The propagation is the project's own (gspn/nn/mixer.py: GSPN-1 per-channel or GSPN-2 compact, the
fused op of docs/mixer.md); the module adds only the token layout and an output projection.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from ..nn.mixer import ChannelPropagation, CompactPropagation
from ..ops import DIRECTIONS

Variant = Literal["gspn1", "gspn2"]


class GSPNSelfAttention(nn.Module):
    """(B, T, C) -> (B, T, C): four-direction propagation over the H x W token map, then `to_out`.

    Args:
        dim: the channels C of the tokens
        variant: "gspn1" (per-channel weights from a low-rank proxy) or "gspn2" (compact: a few proxy
            channels propagated under one shared affinity per direction)
        chunk: None for global scans, k to restart the state every k steps (the published models use 4)
        proxy: the proxy width (GSPN-1's low rank, GSPN-2's proxy channels); default dim // 8
    """

    def __init__(self, dim: int, variant: Variant = "gspn2", chunk: int | None = None, proxy: int | None = None):
        super().__init__()
        if variant not in ("gspn1", "gspn2"):
            raise ValueError(f"GSPNSelfAttention: variant must be 'gspn1' or 'gspn2', got {variant!r}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"GSPNSelfAttention: chunk must be None or at least 1, got {chunk}")
        proxy = proxy or max(1, dim // 8)
        self.dim, self.variant, self.proxy = dim, variant, proxy
        propagation = ChannelPropagation if variant == "gspn1" else CompactPropagation
        self.propagation = propagation(dim, proxy, chunk)
        self.merge = nn.Parameter(torch.full((len(DIRECTIONS),), 1.0 / len(DIRECTIONS)))
        self.to_out = nn.Linear(dim, dim)
        self.hw: tuple[int, int] | None = None  # set by the converted UNet's hooks before every call

    @property
    def chunk(self) -> int | None:
        return self.propagation.chunk

    def settings(self) -> dict:
        """What rebuilds this module: the keyword arguments of its constructor."""
        return {"dim": self.dim, "variant": self.variant, "chunk": self.chunk, "proxy": self.proxy}

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, attention_mask=None,
                **unused) -> Tensor:
        # same call as diffusers' Attention; self-attention has no encoder states and SD passes no mask
        b, t, c = hidden_states.shape
        h, w = self.hw if self.hw is not None else (0, 0)
        if h * w != t:
            raise RuntimeError(f"GSPNSelfAttention: {t} tokens but the map size set by the UNet's hooks is {self.hw}; "
                               "call the UNet converted by gspn.t2i.convert (its hooks set the size)")
        x = hidden_states.transpose(1, 2).reshape(b, c, h, w)
        # the module computes in its own dtype (fp32 while distilled inside a bf16 UNet)
        y = self.propagation(x.to(self.to_out.weight.dtype), self.merge)
        return self.to_out(y.flatten(2).transpose(1, 2)).to(hidden_states.dtype)
