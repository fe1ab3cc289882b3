"""The classification pipelines, built from kornia's augmentations (no torchvision).

Each pipeline maps one image (C, H, W) in [0, 1] to a normalised (C, size, size) tensor. Random
choices come from torch's global generator, which the data module seeds per sample.
"""

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Pipeline(nn.Module):
    """kornia augmentations applied to a single image, returned without the batch dimension."""

    def __init__(self, *steps: nn.Module):
        super().__init__()
        self.steps = K.AugmentationSequential(*steps)

    @torch.no_grad()
    def forward(self, image: Tensor) -> Tensor:
        return self.steps(image[None])[0]


def normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> nn.Module:
    return K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))


def train_pipeline(size: int, *, crop_scale: tuple[float, float] = (0.08, 1.0),
                   crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5, rand_augment_ops: int = 2,
                   rand_augment_magnitude: int = 27, random_erasing: float = 0.25, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD) -> Pipeline:
    """Random resized crop (area fraction crop_scale, aspect crop_ratio), horizontal flip with
    probability hflip, RandAugment (rand_augment_ops ops at magnitude rand_augment_magnitude on
    kornia's 0-30 scale; 0 ops disables it), normalisation, random erasing with probability random_erasing."""
    steps = [K.RandomResizedCrop((size, size), scale=crop_scale, ratio=crop_ratio)]
    if hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=hflip))
    if rand_augment_ops > 0:
        steps.append(RandAugment(rand_augment_ops, rand_augment_magnitude))
    steps.append(normalize(mean, std))
    if random_erasing > 0:
        steps.append(K.RandomErasing(p=random_erasing))
    return Pipeline(*steps)


def eval_pipeline(size: int, crop_pct: float = 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Pipeline:
    """Resize the short side to size / crop_pct, centre crop size x size, normalise."""
    return Pipeline(K.Resize(round(size / crop_pct), side="short", antialias=True), K.CenterCrop(size),
                    normalize(mean, std))
