"""SyntheticShapes: a procedurally generated image dataset whose classes depend on image-wide structure.

Each class is a layout spanning the whole image: a bar crossing it in one of four orientations, two
discs side by side or one above the other, a large ring, or a cross. A local patch cannot tell most
of them apart (a piece of a bar looks like a piece of the cross; one disc looks like the other
pair's), so the network has to relate distant parts of the image. Backgrounds are random colour
gradients, foregrounds random colours, and small distractor dots and pixel noise are added.

Sample i is a pure function of (seed, i): the same seed gives the same images on every machine
and in every worker, and labels cycle through the classes so every split is balanced. Shared by the
tasks' embedded data (classification's SyntheticShapesDataModule, generation's
SyntheticShapesGenerationData).
"""

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

# How a classifier of these images normalises them (classification's SyntheticShapesDataModule, and the
# judges that score generated shapes).
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
CLASSES = ("horizontal_bar", "vertical_bar", "diagonal_bar", "antidiagonal_bar",
           "side_by_side", "one_above_other", "ring", "cross")


class SyntheticShapes(Dataset):
    def __init__(self, size: int, image_size: int = 32, seed: int = 0, noise: float = 0.08, distractors: int = 3,
                 transform: Callable[[Tensor], Tensor] | None = None):
        self.size = size
        self.transform = transform
        self.image_size = image_size
        self.seed = seed
        self.noise = noise
        self.distractors = distractors
        axis = (torch.arange(image_size) + 0.5) / image_size
        self.y, self.x = torch.meshgrid(axis, axis, indexing="ij")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"SyntheticShapes: index {index} out of range for {self.size} samples")
        seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        rng = torch.Generator().manual_seed(seed)
        label = index % len(CLASSES)
        image = self.render(label, rng)
        return (self.transform(image) if self.transform else image), label

    def render(self, label: int, rng: torch.Generator) -> Tensor:
        def uniform(low: float, high: float) -> float:
            return low + (high - low) * torch.rand((), generator=rng).item()

        mask = getattr(self, CLASSES[label])(uniform)
        for _ in range(int(torch.randint(self.distractors + 1, (), generator=rng))):
            mask = torch.maximum(mask, self.disc(uniform(0, 1), uniform(0, 1), uniform(0.03, 0.05)))

        direction = uniform(0, 2 * math.pi)
        ramp = ((self.x - 0.5) * math.cos(direction) + (self.y - 0.5) * math.sin(direction) + 0.5).clamp(0, 1)
        start, end = torch.rand(3, 1, 1, generator=rng), torch.rand(3, 1, 1, generator=rng)
        background = start + (end - start) * 0.5 * ramp
        # A foreground colour far enough from the background's mean that the shape stays visible.
        foreground = torch.rand(3, 1, 1, generator=rng)
        foreground = torch.where((foreground - background.mean((1, 2), keepdim=True)).abs() < 0.3,
                                 1 - foreground, foreground)
        image = background + mask * (foreground - background)
        image = image + self.noise * torch.randn(image.shape, generator=rng)
        return image.clamp_(0, 1)

    def soft(self, distance: Tensor) -> Tensor:
        """Anti-aliased inside (distance < 0) / outside mask, one pixel of blur."""
        return torch.sigmoid(-distance * self.image_size * 2)

    def disc(self, cx: float, cy: float, radius: float) -> Tensor:
        return self.soft(torch.hypot(self.x - cx, self.y - cy) - radius)

    def bar(self, uniform, angle: float) -> Tensor:
        angle = math.radians(angle + uniform(-8, 8))
        cx, cy, width = uniform(0.3, 0.7), uniform(0.3, 0.7), uniform(0.05, 0.12)
        distance = ((self.x - cx) * math.sin(angle) - (self.y - cy) * math.cos(angle)).abs()
        return self.soft(distance - width / 2)

    def horizontal_bar(self, uniform) -> Tensor:
        return self.bar(uniform, 0)

    def vertical_bar(self, uniform) -> Tensor:
        return self.bar(uniform, 90)

    def diagonal_bar(self, uniform) -> Tensor:
        return self.bar(uniform, 45)

    def antidiagonal_bar(self, uniform) -> Tensor:
        return self.bar(uniform, -45)

    def pair(self, uniform, across: bool) -> Tensor:
        radius, shared = uniform(0.09, 0.14), uniform(0.25, 0.75)
        near, far = uniform(0.15, 0.3), uniform(0.7, 0.85)
        first = (near, shared + uniform(-0.05, 0.05))
        second = (far, shared + uniform(-0.05, 0.05))
        if not across:
            first, second = first[::-1], second[::-1]
        return torch.maximum(self.disc(*first, radius), self.disc(*second, radius))

    def side_by_side(self, uniform) -> Tensor:
        return self.pair(uniform, across=True)

    def one_above_other(self, uniform) -> Tensor:
        return self.pair(uniform, across=False)

    def ring(self, uniform) -> Tensor:
        cx, cy = uniform(0.4, 0.6), uniform(0.4, 0.6)
        radius, width = uniform(0.25, 0.35), uniform(0.05, 0.09)
        return self.soft((torch.hypot(self.x - cx, self.y - cy) - radius).abs() - width / 2)

    def cross(self, uniform) -> Tensor:
        return torch.maximum(self.bar(uniform, 0), self.bar(uniform, 90))
