"""Batch-level mixup and cutmix with label smoothing: images mixed with the batch reversed, one mixing
ratio per batch, soft targets that are the same mixture of the two samples' smoothed one-hot labels."""

import math

import torch
from torch import Tensor


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels[:, None], 1 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """A box of area ~(1 - lam) of the image at a uniform random centre, clipped to the image."""
    cut = math.sqrt(1 - lam)
    h, w = int(height * cut), int(width * cut)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(cy - h // 2, 0), min(cy + h // 2, height)
    left, right = max(cx - w // 2, 0), min(cx + w // 2, width)
    return top, bottom, left, right


class MixupCutmix:
    """With probability `prob`, mixup (Beta(mixup_alpha)) or cutmix (Beta(cutmix_alpha)); when both are
    enabled, cutmix is picked with probability `switch_prob`. An alpha of 0 disables that method."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        if not self.enabled or torch.rand(()) >= self.prob:
            return images, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or torch.rand(()) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        # float32: Beta cannot sample bf16, torch's default dtype inside a `bf16-true` step
        concentration = torch.tensor(alpha, dtype=torch.float32)
        lam = torch.distributions.Beta(concentration, concentration).sample().item()
        partner = images.flip(0)
        if use_cutmix:
            height, width = images.shape[-2:]
            top, bottom, left, right = cutmix_box(height, width, lam)
            images = images.clone()
            images[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (height * width)  # the area actually pasted
        else:
            images = lam * images + (1 - lam) * partner
        return images, lam * targets + (1 - lam) * targets.flip(0)
