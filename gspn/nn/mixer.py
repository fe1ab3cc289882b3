"""The GSPN mixer: 2D line-scan propagation in four directions as a token mixer (docs/design.md §1.3, 1.4).

in_proj -> depthwise conv -> per-direction weights, lam, u -> normalise -> propagate in four
directions -> learned merge -> LayerNorm -> GRN -> out_proj. Two ways to make the weights:
`ChannelPropagation` (GSPN-1, per-channel) and `CompactPropagation` (GSPN-2, shared affinity).
Every tensor stays in the input's frame: no flipped or transposed copies.

The propagation hands the projections' outputs to the op `gspn.ops.mixer_propagate` (docs/mixer.md),
which normalises, scans, gates, skips and merges the four directions in one go (GSPN-1 even applies
the low-rank `up` projection inside, so its 24C-channel output is never stored). The op's
"reference" backend is its definition (gspn/ops/mixer_reference.py).
"""

import torch
from torch import Tensor, nn

from ..ops import DIRECTIONS, mixer_propagate
from .norms import GRN, LayerNorm2d


class Propagation(nn.Module):
    """What both kinds of propagation hand the op besides the tensors (set them with `configure_mixers`)."""

    save_states = False  # the op keeps the hidden states for its backward instead of recomputing them
    backend: str | None = None  # the op's backend; None picks the fastest usable (gspn.ops.backends)


class ChannelPropagation(Propagation):
    """GSPN-1: per-channel weight logits, lam, u and a skip d for every direction, from a low-rank proxy."""

    def __init__(self, channels: int, d_state: int, chunk: int | None):
        super().__init__()
        self.chunk = chunk
        self.down = nn.Conv2d(channels, d_state, 1, bias=False)
        self.up = nn.Conv2d(d_state, len(DIRECTIONS) * 6 * channels, 1, bias=False)

    def forward(self, x: Tensor, merge: Tensor) -> Tensor:
        """The four directions, merged: (B, C, H, W). `up` runs inside the op from the proxy, per pixel."""
        proj = self.up.weight.view(self.up.out_channels, self.up.in_channels)
        return mixer_propagate(x, self.down(x), merge, groups=x.shape[1], proj=proj, chunk=self.chunk, skip=True,
                               save_states=self.save_states, backend=self.backend)


class CompactPropagation(Propagation):
    """GSPN-2: propagate a few proxy channels under one affinity per direction shared by all of them.

    lam and u are per proxy channel; the result goes back to the full width with a 1x1 conv, next to
    a learned per-channel skip d * x that carries what the proxy cannot.
    """

    def __init__(self, channels: int, proxy_channels: int, chunk: int | None):
        super().__init__()
        self.chunk = chunk
        self.proxy_channels = proxy_channels
        self.down = nn.Conv2d(channels, proxy_channels, 1, bias=False)
        self.params = nn.Conv2d(channels, len(DIRECTIONS) * (3 + 2 * proxy_channels), 1, bias=False)
        self.up = nn.Conv2d(proxy_channels, channels, 1, bias=False)
        self.skip = nn.Parameter(torch.ones(len(DIRECTIONS), channels))

    def forward(self, x: Tensor, merge: Tensor) -> Tensor:
        """The four directions, merged: (B, C, H, W). `up` and the skip are linear, so the merge goes first:
        up(sum_k m_k u_k h_k) + (sum_k m_k skip_k) x, one 1x1 conv instead of four."""
        y = mixer_propagate(self.down(x), self.params(x), merge, groups=1, chunk=self.chunk, skip=False,
                            save_states=self.save_states, backend=self.backend)
        return self.up(y) + (merge.to(self.skip.dtype) @ self.skip).view(1, -1, 1, 1) * x


class GSPNMixer(nn.Module):
    """Token mixer of a GSPN block; `chunk` None is global at any resolution, an int k is local.

    `configure_mixers(model, ...)` sets the op's backend and whether it saves its hidden states.
    """

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
        # the depthwise conv's backward is several times faster in channels-last on CPU; the
        # propagation reads NCHW planes
        x = self.dwconv(x.contiguous(memory_format=torch.channels_last)).contiguous()
        y = self.propagation(x, self.merge)
        return self.out_proj(self.grn(self.norm(y)))


MIXER_OPTIONS = ("save_states", "backend")


def configure_mixers(model: nn.Module, **options) -> nn.Module:
    """Set the op's options on every GSPNMixer in `model`: `save_states` (bool), whether it keeps the
    hidden states for the backward rather than recomputing them there; `backend` ("reference", "cpu",
    "cuda", or None for the fastest usable)."""
    unknown = set(options) - set(MIXER_OPTIONS)
    if unknown:
        raise TypeError(f"configure_mixers: unknown options {sorted(unknown)}; the options are {MIXER_OPTIONS}")
    for module in model.modules():
        if isinstance(module, Propagation):
            for name, value in options.items():
                setattr(module, name, value)
    return model
