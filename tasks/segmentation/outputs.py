"""Files written by `gspn predict`: palette label PNGs and overlays."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from gspn.errors import ConfigError


def default_palette(num_classes: int) -> list[list[int]]:
    """Distinct-enough colours for data sets that give none."""
    return [[(37 * i) % 256, (91 * i + 50) % 256, (151 * i + 100) % 256] for i in range(num_classes)]


def check_palette(palette: Sequence[Sequence[int]], num_classes: int, owner: str) -> None:
    """One [r, g, b] per class."""
    if len(palette) != num_classes or any(len(colour) != 3 for colour in palette):
        raise ConfigError(f"{owner}: palette needs one [r, g, b] per class ({num_classes}), got {len(palette)} entries")


def save_label_png(labels: Tensor, palette: Sequence[Sequence[int]], path: Path) -> None:
    """(H, W) class indices as an 8-bit palette PNG: the pixel values are the labels, shown in colour."""
    if len(palette) > 256:
        raise ConfigError(f"a palette PNG holds at most 256 classes, got {len(palette)}")
    image = Image.fromarray(labels.numpy().astype(np.uint8), mode="P")
    image.putpalette([channel for colour in palette for channel in colour])
    image.save(path)


def save_overlay_png(image: Tensor, labels: Tensor, palette: Sequence[Sequence[int]], alpha: float, path: Path) -> None:
    """The (3, H, W) image in [0, 1] blended with the coloured labels (opacity alpha)."""
    rgb = image.permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    coloured = np.asarray(palette, dtype=np.uint8)[labels.numpy()]
    Image.blend(Image.fromarray(rgb), Image.fromarray(coloured), alpha).save(path)
