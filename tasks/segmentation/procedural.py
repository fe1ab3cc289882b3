"""An embedded segmentation dataset drawn on the fly: no download, deterministic per (seed, index),
any image size.

Each scene has discs, squares and long bars of random colours on a textured background. A bar that
belongs to a cross (a horizontal and a vertical bar that intersect) is a "cross bar", any other bar
a "lone bar". Away from the intersection the two look the same in every local patch: telling them
apart needs context from the whole length of the bar.
"""

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from gspn.errors import ConfigError

CLASSES = ("background", "disc", "square", "lone bar", "cross bar")
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25))
BACKGROUND, DISC, SQUARE, LONE_BAR, CROSS_BAR = range(len(CLASSES))
CONTEXT_CLASSES = (LONE_BAR, CROSS_BAR)


class SceneCanvas:
    """An image and its label map being drawn; `free` tells whether a box is clear of earlier objects."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.rng = rng
        self.height, self.width = height, width
        base = rng.uniform(0.1, 0.9, size=3)
        ramp = np.linspace(-0.15, 0.15, width)[None, :, None] * rng.choice([-1, 1])
        self.image = np.clip(base + ramp + rng.normal(0, 0.05, size=(height, width, 3)), 0, 1)
        self.label = np.full((height, width), BACKGROUND, dtype=np.int64)
        self.taken = np.zeros((height, width), dtype=bool)

    def colour(self) -> np.ndarray:
        return self.rng.uniform(0, 1, size=3)

    def free(self, top: int, left: int, bottom: int, right: int, margin: int) -> bool:
        box = self.taken[max(top - margin, 0):bottom + margin, max(left - margin, 0):right + margin]
        return bottom <= self.height and right <= self.width and not box.any()

    def paint(self, mask: np.ndarray, cls: int, colour: np.ndarray) -> None:
        self.image[mask] = np.clip(colour + self.rng.normal(0, 0.03, size=(int(mask.sum()), 3)), 0, 1)
        self.label[mask] = cls
        self.taken |= mask

    def box(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        mask = np.zeros_like(self.taken)
        mask[top:bottom, left:right] = True
        return mask


def draw_scene(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    canvas = SceneCanvas(height, width, rng)
    side = min(height, width)
    thick = max(2, side // 12)
    margin = max(2, side // 16)

    def bar_box(horizontal: bool) -> tuple[int, int, int, int]:
        extent = width if horizontal else height
        length = int(rng.uniform(0.45, 0.9) * extent)
        start = int(rng.integers(0, extent - length + 1))
        across = int(rng.integers(0, (height if horizontal else width) - thick + 1))
        return (across, start, across + thick, start + length) if horizontal else \
            (start, across, start + length, across + thick)

    if rng.random() < 0.6:  # a cross: the vertical bar passes through the middle part of the horizontal one
        top, left, bottom, right = bar_box(True)
        column = int(rng.integers(left + (right - left) // 5, right - (right - left) // 5 - thick + 1))
        length = int(rng.uniform(0.45, 0.9) * height)
        start = int(np.clip(top + thick // 2 - rng.integers(length // 5, 4 * length // 5), 0, height - length))
        cross = canvas.box(top, left, bottom, right) | canvas.box(start, column, start + length, column + thick)
        canvas.paint(cross, CROSS_BAR, canvas.colour())
    for _ in range(int(rng.integers(1, 3))):  # lone bars, clear of everything else
        for _attempt in range(20):
            box = bar_box(bool(rng.random() < 0.5))
            if canvas.free(*box, margin):
                canvas.paint(canvas.box(*box), LONE_BAR, canvas.colour())
                break
    rows, columns = np.mgrid[:height, :width]
    for _ in range(int(rng.integers(2, 5))):  # discs and squares
        size = int(rng.integers(max(4, side // 6), max(5, side // 3) + 1))
        for _attempt in range(20):
            top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            if canvas.free(top, left, top + size, left + size, margin // 2):
                if rng.random() < 0.5:
                    radius = size / 2
                    centre_y, centre_x = top + radius - 0.5, left + radius - 0.5
                    mask = (rows - centre_y) ** 2 + (columns - centre_x) ** 2 <= radius ** 2
                    canvas.paint(mask, DISC, canvas.colour())
                else:
                    canvas.paint(canvas.box(top, left, top + size, left + size), SQUARE, canvas.colour())
                break
    return canvas.image.astype(np.float32), canvas.label


class ProceduralScenes(Dataset):
    """`length` scenes of (height, width) pixels: (image (3, H, W) in [0, 1], labels (H, W) int64).

    Args:
        length: the number of scenes (at least 1).
        image_size: the scenes' size in pixels, an int or (height, width) (at least 16 x 16).
        seed: the scenes: scene i is drawn from (seed, i).
    """

    def __init__(self, length: int, image_size: int | tuple[int, int] = 64, seed: int = 0):
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if length < 1 or min(height, width) < 16:
            raise ConfigError(f"ProceduralScenes: need length >= 1 and images of at least 16 x 16 pixels, got "
                              f"length {length}, image_size {image_size}")
        self.length, self.height, self.width, self.seed = length, height, width, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"ProceduralScenes: index {index} out of range({self.length})")
        image, label = draw_scene(self.height, self.width, np.random.default_rng([self.seed, index]))
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label)
