"""The GSPN diffusion denoiser: a class-conditional noise predictor for images or latents.

patch embedding -> blocks (GSPN mixer with four directions + MLP) with long skips from the first
half of the blocks to the second (U-ViT style) -> norm -> linear -> unpatchify. No positional
embedding: the line scans carry position, so the model runs at any size divisible by the patch.

Conditioning on the timestep and the class (index `num_classes` is the null class of classifier-free
guidance), chosen by `conditioning`:
- "adaln": adaLN-Zero in every block and the final layer, as DiT (shift, scale and a zero-initialised
  gate per branch, from the embedding of timestep + class);
- "additive": the embedding is added to every token after the patch embedding, as the official release.
Every block's scan is global unless `chunks` says otherwise (the release's "global" layers are not).

`mixer="attention"` is the control: the same denoiser with multi-head self-attention in place of the
GSPN mixer and, since attention cannot tell where a token sits, a fixed 2D sin-cos position embedding
added after the patch embedding (DiT's design). The embedding is computed for the grid at hand, so at
a larger sample size its positions continue past the training grid. See docs/generation.md for how
the two compare.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gspn.errors import ConfigError

from ..nn import GSPNMixer, LayerNorm2d, Mlp, SelfAttention, sincos_position_2d
from .arguments import RecordsArguments
from .registry import register_model

CONDITIONING = ("adaln", "additive")
MIXERS = ("gspn", "attention")


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the (possibly fractional) timestep, then a two-layer MLP."""

    def __init__(self, dim: int, frequencies: int = 256, max_period: float = 10000.0):
        super().__init__()
        half = frequencies // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1).to(self.mlp[0].weight.dtype))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[..., None, None]) + shift[..., None, None]


class DenoiserBlock(nn.Module):
    """Pre-norm mixer and MLP branches; `adaln` modulates both from the conditioning, `skip` first
    fuses a long skip (concatenate, 1x1 conv) as U-ViT's second-half blocks do."""

    def __init__(self, dim: int, mixer: nn.Module, *, adaln: bool, skip: bool, mlp_ratio: float):
        super().__init__()
        self.skip = nn.Conv2d(2 * dim, dim, 1) if skip else None
        self.norm1 = LayerNorm2d(dim, elementwise_affine=not adaln)
        self.mixer = mixer
        self.norm2 = LayerNorm2d(dim, elementwise_affine=not adaln)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim)) if adaln else None

    def forward(self, x: Tensor, c: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=1))
        if self.modulation is None:
            x = x + self.mixer(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        x = x + gate1[..., None, None] * self.mixer(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[..., None, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """Norm (adaLN-modulated or affine), then a zero-initialised 1x1 conv to patch * patch * out channels."""

    def __init__(self, dim: int, patch_size: int, out_chans: int, adaln: bool):
        super().__init__()
        self.norm = LayerNorm2d(dim, elementwise_affine=not adaln)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim)) if adaln else None
        self.proj = nn.Conv2d(dim, patch_size * patch_size * out_chans, 1)
        self.patch_size = patch_size

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        x = self.norm(x)
        if self.modulation is not None:
            x = modulate(x, *self.modulation(c).chunk(2, dim=1))
        return F.pixel_shuffle(self.proj(x), self.patch_size)


class GSPNDenoiser(nn.Module, RecordsArguments):
    """Predicts the noise (or v) of x_t given the timestep t and the class label y.

    in_chans: 3 for pixels, 4 for Stable Diffusion latents; the output has `out_chans` (default in_chans).
    num_classes: real classes; label `num_classes` is the null class (0 classes: unconditional).
    chunks: None (every block global), an int k (every block local in chunks of k) or one per block.
    ratio, d_state, compact, proxy_channels, kernel_size: the GSPN mixer's options.
    mixer: "gspn", or "attention" with `heads` heads (the control; see the module docstring).
    """

    def __init__(self, hidden: int = 384, depth: int = 12, *, patch_size: int = 2, in_chans: int = 4,
                 out_chans: int | None = None, num_classes: int = 1000, conditioning: str = "adaln",
                 mlp_ratio: float = 4.0, chunks: int | None | Sequence[int | None] = None, ratio: float = 1.0,
                 d_state: int = 8, compact: bool = False, proxy_channels: int = 2, kernel_size: int = 3,
                 long_skips: bool = True, mixer: str = "gspn", heads: int = 4):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ConfigError(f"GSPNDenoiser: conditioning must be one of {CONDITIONING}, got {conditioning!r}")
        if mixer not in MIXERS:
            raise ConfigError(f"GSPNDenoiser: mixer must be one of {MIXERS}, got {mixer!r}")
        if mixer == "attention" and hidden % 4:
            raise ConfigError(f"GSPNDenoiser: the attention control's position embedding needs hidden divisible "
                              f"by 4, got {hidden}")
        if patch_size < 1 or depth < 1 or hidden < 1:
            raise ConfigError(f"GSPNDenoiser: hidden, depth and patch_size must be positive, "
                              f"got {hidden}, {depth}, {patch_size}")
        block_chunks = list(chunks) if isinstance(chunks, Sequence) else [chunks] * depth
        if len(block_chunks) != depth:
            raise ConfigError(f"GSPNDenoiser: chunks needs one entry per block ({depth}), got {len(block_chunks)}")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.out_chans = out_chans or in_chans
        self.num_classes = num_classes
        self.conditioning = conditioning
        self.mixer_kind = mixer
        adaln = conditioning == "adaln"

        def token_mixer(chunk: int | None) -> nn.Module:
            if mixer == "attention":
                return SelfAttention(hidden, heads)
            return GSPNMixer(hidden, chunk=chunk, ratio=ratio, d_state=d_state, compact=compact,
                             proxy_channels=proxy_channels, kernel_size=kernel_size)

        self.patch_embed = nn.Conv2d(in_chans, hidden, patch_size, stride=patch_size)
        self.time_embed = TimestepEmbedder(hidden)
        self.class_embed = nn.Embedding(num_classes + 1, hidden) if num_classes > 0 else None
        # Blocks [0, depth // 2) feed long skips to the mirrored blocks of the second half; an odd
        # depth leaves one middle block without a skip.
        self.num_skips = depth // 2 if long_skips else 0
        self.blocks = nn.ModuleList(
            DenoiserBlock(hidden, token_mixer(block_chunks[i]), adaln=adaln, skip=i >= depth - self.num_skips,
                          mlp_ratio=mlp_ratio)
            for i in range(depth))
        self.final = FinalLayer(hidden, patch_size, self.out_chans, adaln)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
                nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=0.02)
        # adaLN-Zero: every residual branch starts closed; the output starts at zero.
        for module in [*self.blocks, self.final]:
            if module.modulation is not None:
                nn.init.zeros_(module.modulation[1].weight)
                nn.init.zeros_(module.modulation[1].bias)
        nn.init.zeros_(self.final.proj.weight)
        nn.init.zeros_(self.final.proj.bias)

    def condition(self, t: Tensor, y: Tensor | None) -> Tensor:
        c = self.time_embed(t)
        if self.class_embed is not None:
            if y is None:
                raise ValueError(f"GSPNDenoiser: class labels y are needed (num_classes={self.num_classes})")
            c = c + self.class_embed(y)
        return c

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x: (B, in_chans, H, W) with H, W divisible by the patch; t: (B,) timesteps; y: (B,) labels."""
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != self.in_chans or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(f"GSPNDenoiser: expected (batch, {self.in_chans}, height, width) with height and width "
                             f"divisible by the patch size {p}, got {tuple(x.shape)}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        c = self.condition(t, y)
        # Channels-last inside (the 1x1 convs and the channel LayerNorms read contiguous channel rows:
        # the CPU demo's training step is 13% shorter); the output is a contiguous (B, C, H, W) again.
        h = self.patch_embed(x).contiguous(memory_format=torch.channels_last)
        if self.mixer_kind == "attention":
            h = h + sincos_position_2d(*h.shape[1:]).to(h)
        if self.conditioning == "additive":
            h = h + c[..., None, None]
        skips = []
        for i, block in enumerate(self.blocks):
            skip = skips.pop() if block.skip is not None else None
            h = block(h, c, skip)
            if i < self.num_skips:
                skips.append(h)
        return self.final(h, c).contiguous()

    def no_weight_decay(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.ndim <= 1}


# The paper's sizes (hidden, depth). mlp_ratio 1.25 with a mixer of ratio 1.0 lands the additive
# models within 5% of the reported 137M / 443M / 690M (2^20 units); see docs/generation.md.
SIZES = {"xl": (1500, 56), "l": (1200, 56), "b": (900, 30), "s": (384, 12), "nano": (96, 6)}
PAPER_MLP_RATIO = 1.25


def _build(overrides: dict, size: str, patch_size: int) -> GSPNDenoiser:
    hidden, depth = SIZES[size]
    preset = dict(hidden=hidden, depth=depth, patch_size=patch_size, mlp_ratio=PAPER_MLP_RATIO)
    if size == "nano":  # the CPU demo's size: RGB SyntheticShapes, 8 classes
        preset.update(mlp_ratio=2.0, in_chans=3, num_classes=8)
    return GSPNDenoiser(**{**preset, **overrides})


@register_model(family="denoiser")
def gspn_denoiser_xl2(**overrides) -> GSPNDenoiser:
    """GSPN denoiser XL/2: hidden 1500, depth 56."""
    return _build(overrides, "xl", 2)


@register_model(family="denoiser")
def gspn_denoiser_xl4(**overrides) -> GSPNDenoiser:
    """GSPN denoiser XL/4: hidden 1500, depth 56."""
    return _build(overrides, "xl", 4)


@register_model(family="denoiser")
def gspn_denoiser_l2(**overrides) -> GSPNDenoiser:
    """GSPN denoiser L/2: hidden 1200, depth 56."""
    return _build(overrides, "l", 2)


@register_model(family="denoiser")
def gspn_denoiser_l4(**overrides) -> GSPNDenoiser:
    """GSPN denoiser L/4: hidden 1200, depth 56."""
    return _build(overrides, "l", 4)


@register_model(family="denoiser")
def gspn_denoiser_b2(**overrides) -> GSPNDenoiser:
    """GSPN denoiser B/2: hidden 900, depth 30."""
    return _build(overrides, "b", 2)


@register_model(family="denoiser")
def gspn_denoiser_b4(**overrides) -> GSPNDenoiser:
    """GSPN denoiser B/4: hidden 900, depth 30."""
    return _build(overrides, "b", 4)


@register_model(family="denoiser")
def gspn_denoiser_s2(**overrides) -> GSPNDenoiser:
    """GSPN denoiser S/2: hidden 384, depth 12."""
    return _build(overrides, "s", 2)


@register_model(family="denoiser")
def gspn_denoiser_s4(**overrides) -> GSPNDenoiser:
    """GSPN denoiser S/4: hidden 384, depth 12."""
    return _build(overrides, "s", 4)


@register_model(family="denoiser")
def gspn_denoiser_nano2(**overrides) -> GSPNDenoiser:
    """GSPN denoiser nano/2 (CPU demos): hidden 96, depth 6."""
    return _build(overrides, "nano", 2)


@register_model(family="denoiser")
def gspn_denoiser_nano4(**overrides) -> GSPNDenoiser:
    """GSPN denoiser nano/4 (CPU demos): hidden 96, depth 6."""
    return _build(overrides, "nano", 4)
