"""Image pipelines shared by the tasks, built from kornia's augmentations (no torchvision): the
single-image `Pipeline`, normalisation and the evaluation pipeline (resize, centre crop, normalise).

Each pipeline maps one image (C, H, W) in [0, 1] to a normalised (C, size, size) tensor. Random
choices come from torch's global generator, which the data module seeds per sample. A task's own
training augmentation lives in its folder (classification: tasks/classification/transforms.py).
"""

import kornia.augmentation as K
import torch
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


def eval_pipeline(size: int, crop_pct: float = 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Pipeline:
    """Resize the short side to size / crop_pct, centre crop size x size, normalise."""
    return Pipeline(K.Resize(round(size / crop_pct), side="short", antialias=True), K.CenterCrop(size),
                    normalize(mean, std))
