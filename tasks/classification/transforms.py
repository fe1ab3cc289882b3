"""The training augmentation of classification, built from kornia's augmentations (no torchvision)
on the shared pipeline pieces (tasks/transforms.py: Pipeline, normalisation, the evaluation pipeline).

The pipeline maps one image (C, H, W) in [0, 1] to a normalised (C, size, size) tensor. Random
choices come from torch's global generator, which the data module seeds per sample.
"""

import kornia.augmentation as K
from kornia.augmentation.auto import RandAugment

from ..transforms import IMAGENET_MEAN, IMAGENET_STD, Pipeline, normalize


def train_pipeline(size: int, *, crop_scale: tuple[float, float], crop_ratio: tuple[float, float], hflip: float,
                   rand_augment_ops: int, rand_augment_magnitude: int, random_erasing: float,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Pipeline:
    """Random resized crop (area fraction crop_scale, aspect crop_ratio), horizontal flip with
    probability hflip, RandAugment (rand_augment_ops ops at magnitude rand_augment_magnitude on
    kornia's 0-30 scale; 0 ops disables it), normalisation, random erasing with probability random_erasing.
    The defaults are the data module's (ImageFolderDataModule)."""
    steps = [K.RandomResizedCrop((size, size), scale=crop_scale, ratio=crop_ratio)]
    if hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=hflip))
    if rand_augment_ops > 0:
        steps.append(RandAugment(rand_augment_ops, rand_augment_magnitude))
    steps.append(normalize(mean, std))
    if random_erasing > 0:
        steps.append(K.RandomErasing(p=random_erasing))
    return Pipeline(*steps)
