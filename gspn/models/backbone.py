"""The hierarchical GSPN backbone: stem, four stages of GSPN blocks, classification head.

Strides 4, 8, 16, 32; any input from 32 pixels up, odd and non-square included. The API follows
timm's: forward_features, forward_intermediates, forward_head, reset_classifier, feature_info.
"""

import abc
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gspn.errors import ConfigError

from ..nn import GSPNBlock, LayerNorm2d
from .arguments import RecordsArguments

Chunk = int | None


def _stem(in_chans: int, dim: int) -> nn.Sequential:
    """Two 3x3 stride-2 convs: stride 4."""
    return nn.Sequential(
        nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1), LayerNorm2d(dim // 2), nn.GELU(),
        nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1), LayerNorm2d(dim),
    )


def _downsample(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, out_dim, 3, stride=2, padding=1), LayerNorm2d(out_dim))


class Stage(nn.Module):
    def __init__(self, downsample: nn.Module, blocks: list[GSPNBlock]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class Head(nn.Module):
    def __init__(self, dim: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.norm(x).mean(dim=(2, 3))
        return x if pre_logits else self.fc(self.drop(x))


class Backbone(abc.ABC):
    """The backbone API that the tasks build on: any nn.Module class with `reset_classifier` and
    `set_grad_checkpointing` (and a `num_classes` attribute, the size of its classifier) is a Backbone
    without subclassing it (`issubclass` answers through `__subclasshook__`); GSPNBackbone subclasses it.

    A task's type hint names this class rather than nn.Module, so that the `gspn` help lists the
    backbones instead of every module class in the environment, and a class_path to a module without
    the API is an error when the command line is parsed.
    """

    API = ("reset_classifier", "set_grad_checkpointing")

    @abc.abstractmethod
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with one of num_classes outputs (and set `num_classes`)."""

    @abc.abstractmethod
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the blocks' activations in the backward pass to save memory."""

    @classmethod
    def __subclasshook__(cls, other: type):
        if cls is not Backbone:
            return NotImplemented
        has_api = issubclass(other, nn.Module) and all(callable(getattr(other, name, None)) for name in cls.API)
        return True if has_api else NotImplemented


class GSPNBackbone(nn.Module, Backbone, RecordsArguments):
    """GSPN classification backbone.

    dims: four stage widths, or one int doubled per stage. chunks: per stage, one value for all its
    blocks or a list with one per block; an int k scans locally in chunks of k, None globally.
    Block options (ratio, d_state, compact, proxy_channels, kernel_size, lpu) apply to every block.
    stage_norms: give every stage an output norm, which forward_intermediates(norm=True) applies
    (for dense heads; a checkpoint without them loads with the norms reported missing).
    """

    def __init__(self, dims: int | Sequence[int] = 96, depths: Sequence[int] = (2, 2, 7, 2), *,
                 chunks: Sequence[Chunk | Sequence[Chunk]] = (2, 2, None, None), num_classes: int = 1000,
                 in_chans: int = 3, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, drop_rate: float = 0.0,
                 ratio: float = 1.5, d_state: int = 8, compact: bool = False, proxy_channels: int = 2,
                 kernel_size: int = 7, lpu: bool = False, stage_norms: bool = False):
        super().__init__()
        dims = [dims * 2**i for i in range(4)] if isinstance(dims, int) else list(dims)
        if len(dims) != 4 or len(depths) != 4 or len(chunks) != 4:
            raise ConfigError(f"GSPNBackbone: dims, depths and chunks need one entry per stage (4), "
                              f"got {len(dims)}, {len(depths)} and {len(chunks)}")
        block_chunks = [_per_block(c, d, i) for i, (c, d) in enumerate(zip(chunks, depths))]
        total = sum(depths)
        drop_paths = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        block_args = dict(mlp_ratio=mlp_ratio, ratio=ratio, d_state=d_state, compact=compact,
                          proxy_channels=proxy_channels, kernel_size=kernel_size, lpu=lpu)

        self.stem = _stem(in_chans, dims[0])
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            blocks = [GSPNBlock(dims[i], chunk=block_chunks[i][j], drop_path=drop_paths[first + j], **block_args)
                      for j in range(depth)]
            downsample = _downsample(dims[i - 1], dims[i]) if i > 0 else nn.Identity()
            self.stages.append(Stage(downsample, blocks))
        # Output norms for dense heads; only built on request, since a classifier never uses them.
        self.stage_norms = nn.ModuleList(LayerNorm2d(dim) for dim in dims) if stage_norms else None
        self.head = Head(dims[-1], num_classes, drop_rate)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = dims[-1]
        self.feature_info = [dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}") for i in range(4)]
        self.apply(_init_weights)

    def forward_intermediates(self, x: Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs for dense heads, as timm's API: (B, dims[i], ceil(H / s), ceil(W / s)) at
        strides s = 4, 8, 16, 32.

        indices: which stages (0-3; negative counts from the end), an int n for the last n, None for all.
        norm: pass each through its stage's output norm. output_fmt: "NCHW" or "NHWC".
        Returns (final features, intermediates), or the intermediates alone with intermediates_only.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"forward_intermediates: output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        stages = len(self.stages)
        if indices is None:
            keep = list(range(stages))
        elif isinstance(indices, int):
            keep = list(range(stages - indices, stages))
        else:
            keep = [i % stages if -stages <= i < stages else i for i in indices]
        if norm and self.stage_norms is None:
            raise ConfigError("forward_intermediates(norm=True) needs the stage norms: build the backbone "
                              "with stage_norms=True")
        if any(not 0 <= i < stages for i in keep):
            raise ConfigError(f"forward_intermediates: indices must select stages 0-{stages - 1}, got {indices}")
        final, kept = self._run_stages(x, set(keep), norm)
        if output_fmt == "NHWC":
            kept = [t.permute(0, 2, 3, 1) for t in kept]
        return kept if intermediates_only else (final, kept)

    def forward_features(self, x: Tensor) -> Tensor:
        return self._run_stages(x, set(), norm=False)[0]

    def _run_stages(self, x: Tensor, keep: set[int], norm: bool) -> tuple[Tensor, list[Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ConfigError(f"{type(self).__name__}: expected images of shape (batch, {self.in_chans}, height, "
                              f"width), got {tuple(x.shape)}")
        x = self.stem(x)
        kept = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in keep:
                kept.append(self.stage_norms[i](x) if norm else x)
        return x, kept

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head.fc = fc.to(self.head.norm.weight.device)
        _init_weights(self.head.fc)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Norm weights, biases and other 1-D parameters (the merge scalars, GRN, skips)."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}


def _per_block(chunk: Chunk | Sequence[Chunk], depth: int, stage: int) -> list[Chunk]:
    if chunk is None or isinstance(chunk, int):
        return [chunk] * depth
    if len(chunk) != depth:
        raise ConfigError(f"GSPNBackbone: stage {stage} has {depth} blocks but {len(chunk)} chunks: {list(chunk)}")
    return list(chunk)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
        nn.init.trunc_normal_(m.weight, std=0.02)
    elif isinstance(m, nn.Conv2d):  # He init on the fan-out of one group, so depthwise convs are not shrunk
        fan_out = m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        nn.init.normal_(m.weight, std=(2.0 / fan_out) ** 0.5)
    else:
        return
    if m.bias is not None:
        nn.init.zeros_(m.bias)
