"""The GSPN mixer: 2D line-scan propagation in four directions as a token mixer (docs/design.md §1.3, 1.4).

in_proj -> depthwise conv -> per-direction weights, lam, u -> normalise -> propagate in four
directions -> learned merge -> LayerNorm -> GRN -> out_proj. Two ways to make the weights:
`ChannelPropagation` (GSPN-1, per-channel) and `CompactPropagation` (GSPN-2, shared affinity).
Every tensor stays in the input's frame: no flipped or transposed copies.

Two equal paths (docs/mixer.md): the fused one (default) hands the projections' outputs to the op
`gspn.ops.mixer_propagate`, which normalises, scans, gates, skips and merges the four directions in
one go (GSPN-1 even applies the low-rank `up` projection inside, so its 24C-channel output is never
stored); the per-direction one (`fused = False`) is the composition of `propagate` calls below,
kept as the definition the fused path is tested against.
"""

import torch
from torch import Tensor, nn

from ..ops import mixer_propagate, propagate
from .norms import GRN, LayerNorm2d
from .normalize import stochastic_normalize

DIRECTIONS = ("lr", "rl", "tb", "bt")
CROSS_DIM = {"lr": 2, "rl": 2, "tb": 3, "bt": 3}  # rows are the cross axis of a horizontal scan


def scan_directions(x: Tensor, lam: Tensor, a: Tensor, b: Tensor, c: Tensor, u: Tensor,
                    chunk: int | None = None) -> Tensor:
    """u * h for each direction, stacked in DIRECTIONS order: (B, 4, C, H, W) in x's frame.

    x: (B, C, H, W). lam, u: (B, 4, C, H, W). a, b, c: (B, 4, G, H, W) weight logits, G dividing C,
    normalised here along each direction's cross axis. The op runs in x's dtype (bf16 under autocast)
    and accumulates in float32.
    """
    out = []
    for k, direction in enumerate(DIRECTIONS):
        weights = stochastic_normalize(a[:, k], b[:, k], c[:, k], cross_dim=CROSS_DIM[direction])
        h = propagate(x, lam[:, k].to(x.dtype), *(w.to(x.dtype) for w in weights), direction=direction, chunk=chunk)
        out.append(u[:, k] * h)
    return torch.stack(out, dim=1)


class ChannelPropagation(nn.Module):
    """GSPN-1: per-channel weight logits, lam, u and a skip d for every direction, from a low-rank proxy."""

    save_states = False  # the fused op keeps the hidden states for its backward instead of recomputing them

    def __init__(self, channels: int, d_state: int, chunk: int | None):
        super().__init__()
        self.chunk = chunk
        self.down = nn.Conv2d(channels, d_state, 1, bias=False)
        self.up = nn.Conv2d(d_state, len(DIRECTIONS) * 6 * channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """The per-direction path: (B, 4, C, H, W), one map per direction before the merge."""
        B, C, H, W = x.shape
        a, b, c, lam, u, d = self.up(self.down(x)).view(B, len(DIRECTIONS), 6, C, H, W).unbind(2)
        return scan_directions(x, lam, a, b, c, u, self.chunk) + d * x.unsqueeze(1)

    def mixed(self, x: Tensor, merge: Tensor) -> Tensor:
        """The fused path, merged: (B, C, H, W). `up` runs inside the op from the proxy, per pixel."""
        proj = self.up.weight.view(self.up.out_channels, self.up.in_channels)
        return mixer_propagate(x, self.down(x), merge, groups=x.shape[1], proj=proj, chunk=self.chunk, skip=True,
                               save_states=self.save_states)


class CompactPropagation(nn.Module):
    """GSPN-2: propagate a few proxy channels under one affinity per direction shared by all of them.

    lam and u are per proxy channel; the result goes back to the full width with a 1x1 conv, next to
    a learned per-channel skip d * x that carries what the proxy cannot.
    """

    save_states = False

    def __init__(self, channels: int, proxy_channels: int, chunk: int | None):
        super().__init__()
        self.chunk = chunk
        self.proxy_channels = proxy_channels
        self.down = nn.Conv2d(channels, proxy_channels, 1, bias=False)
        self.params = nn.Conv2d(channels, len(DIRECTIONS) * (3 + 2 * proxy_channels), 1, bias=False)
        self.up = nn.Conv2d(proxy_channels, channels, 1, bias=False)
        self.skip = nn.Parameter(torch.ones(len(DIRECTIONS), channels))

    def forward(self, x: Tensor) -> Tensor:
        """The per-direction path: (B, 4, C, H, W), one map per direction before the merge."""
        B, C, H, W = x.shape
        P, K = self.proxy_channels, len(DIRECTIONS)
        a, b, c, lam, u = self.params(x).view(B, K, 3 + 2 * P, H, W).split([1, 1, 1, P, P], dim=2)
        y = scan_directions(self.down(x), lam, a, b, c, u, self.chunk)
        y = self.up(y.flatten(0, 1)).view(B, K, C, H, W)
        return y + self.skip.view(1, K, C, 1, 1) * x.unsqueeze(1)

    def mixed(self, x: Tensor, merge: Tensor) -> Tensor:
        """The fused path, merged: (B, C, H, W). `up` and the skip are linear, so the merge goes first:
        up(sum_k m_k u_k h_k) + (sum_k m_k skip_k) x, one 1x1 conv instead of four."""
        y = mixer_propagate(self.down(x), self.params(x), merge, groups=1, chunk=self.chunk, skip=False,
                            save_states=self.save_states)
        return self.up(y) + (merge.to(self.skip.dtype) @ self.skip).view(1, -1, 1, 1) * x


class GSPNMixer(nn.Module):
    """Token mixer of a GSPN block; `chunk` None is global at any resolution, an int k is local.

    `fused` (class default True; set it on an instance, or use `use_fused_mixers(model, False)`) picks
    the fused op over the per-direction path; both give the same numbers to float rounding.
    """

    fused = True

    def __init__(self, dim: int, *, chunk: int | None = None, ratio: float = 1.5, d_state: int = 8,
                 compact: bool = False, proxy_channels: int = 2, kernel_size: int = 7):
        super().__init__()
        inner = int(dim * ratio)
        self.in_proj = nn.Conv2d(dim, inner, 1, bias=False)
        self.dwconv = nn.Conv2d(inner, inner, kernel_size, padding=kernel_size // 2, groups=inner, bias=False)
        if compact:
            self.propagation = CompactPropagation(inner, proxy_channels, chunk)
        else:
            self.propagation = ChannelPropagation(inner, d_state, chunk)
        self.merge = nn.Parameter(torch.full((len(DIRECTIONS),), 1.0 / len(DIRECTIONS)))
        self.norm = LayerNorm2d(inner)
        self.grn = GRN(inner)
        self.out_proj = nn.Conv2d(inner, dim, 1, bias=False)

    @property
    def chunk(self) -> int | None:
        return self.propagation.chunk

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_proj(x)
        if self.fused:
            # the depthwise conv's backward is several times faster in channels-last on CPU; the
            # propagation reads NCHW planes
            x = self.dwconv(x.contiguous(memory_format=torch.channels_last)).contiguous()
            y = self.propagation.mixed(x, self.merge)
        else:
            x = self.dwconv(x)
            y = self.propagation(x)
            y = torch.einsum("k,bkchw->bchw", self.merge.to(y.dtype), y)
        return self.out_proj(self.grn(self.norm(y)))


def use_fused_mixers(model: nn.Module, fused: bool = True, *, save_states: bool | None = None) -> nn.Module:
    """Switch every GSPNMixer in `model` to the fused op (or back to the per-direction path); with
    `save_states`, also whether the fused op saves its hidden states rather than recomputing them."""
    for module in model.modules():
        if isinstance(module, GSPNMixer):
            module.fused = fused
        if save_states is not None and isinstance(module, (ChannelPropagation, CompactPropagation)):
            module.save_states = save_states
    return model
