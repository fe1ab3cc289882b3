"""Image transforms on float tensors (C, H, W) with values in [0, 1], written without torchvision.

Random choices come from torch's global generator, so seeding torch makes them reproducible.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Transform = Callable[[Tensor], Tensor]


def pil_to_tensor(image: Image.Image) -> Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


def uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return resized.clamp_(0, 1)


class Compose:
    def __init__(self, *transforms: Transform):
        self.transforms = transforms

    def __call__(self, image: Tensor) -> Tensor:
        for transform in self.transforms:
            image = transform(image)
        return image


class RandomResizedCrop:
    """A crop of random area (fraction `scale` of the image) and aspect ratio, resized to `size`."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size = (size, size)
        self.scale = scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.ratio = ratio

    def __call__(self, image: Tensor) -> Tensor:
        top, left, height, width = self.crop_box(image.shape[-2], image.shape[-1])
        return resize(image[:, top:top + height, left:left + width], self.size)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * uniform(*self.scale)
            aspect = math.exp(uniform(*self.log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        # No sample fitted: the largest centred crop with the aspect ratio clamped to the allowed range.
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
        return (height - h) // 2, (width - w) // 2, h, w


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Tensor) -> Tensor:
        return image.flip(-1) if torch.rand(()) < self.p else image


class ResizeCenterCrop:
    """Evaluation view: resize the shorter side to size / crop_pct, then take the centred size x size crop."""

    def __init__(self, size: int, crop_pct: float = 0.875):
        self.size = size
        self.crop_pct = crop_pct

    def __call__(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        short = math.floor(self.size / self.crop_pct)
        scale = short / min(height, width)
        image = resize(image, (max(round(height * scale), self.size), max(round(width * scale), self.size)))
        top = (image.shape[-2] - self.size) // 2
        left = (image.shape[-1] - self.size) // 2
        return image[:, top:top + self.size, left:left + self.size]


class Normalize:
    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


class RandomErasing:
    """With probability p, replace a random rectangle by standard normal noise (apply after Normalize)."""

    def __init__(self, p: float = 0.25, area: tuple[float, float] = (0.02, 1 / 3), ratio: tuple[float, float] = (0.3, 3.3)):
        self.p = p
        self.area = area
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def __call__(self, image: Tensor) -> Tensor:
        if torch.rand(()) >= self.p:
            return image
        channels, height, width = image.shape
        for _ in range(10):
            target = height * width * uniform(*self.area)
            aspect = math.exp(uniform(*self.log_ratio))
            h = round(math.sqrt(target / aspect))
            w = round(math.sqrt(target * aspect))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                image = image.clone()
                image[:, top:top + h, left:left + w] = torch.randn(channels, h, w)
                return image
        return image


# RandAugment. Each op takes the image and a signed strength in [-1, 1] (the magnitude / 10 with a
# random sign); ops without a direction use its absolute value.

def blend(image: Tensor, degenerate: Tensor, factor: float) -> Tensor:
    """factor 0 gives `degenerate`, 1 the image, beyond 1 extrapolates (as PIL's ImageEnhance)."""
    return (degenerate + factor * (image - degenerate)).clamp_(0, 1)


def grayscale(image: Tensor) -> Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True).expand_as(image)


def affine(image: Tensor, matrix: list[list[float]], fill: float = 0.5) -> Tensor:
    """Resample with `matrix` (2x3, output -> input, in pixel units around the centre); outside is `fill`."""
    height, width = image.shape[-2:]
    # affine_grid works in coordinates normalised to [-1, 1] per axis: conjugate by the pixel scale.
    scale = torch.tensor([width / 2, height / 2])
    matrix = torch.tensor(matrix, dtype=torch.float32)
    theta = torch.cat([matrix[:, :2] * scale / scale[:, None], matrix[:, 2:] / scale[:, None]], dim=1)[None]
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None] - fill, grid, align_corners=False)[0] + fill


def rotate(image: Tensor, strength: float) -> Tensor:
    angle = math.radians(30 * strength)
    cos, sin = math.cos(angle), math.sin(angle)
    return affine(image, [[cos, -sin, 0], [sin, cos, 0]])


def shear_x(image: Tensor, strength: float) -> Tensor:
    return affine(image, [[1, 0.3 * strength, 0], [0, 1, 0]])


def shear_y(image: Tensor, strength: float) -> Tensor:
    return affine(image, [[1, 0, 0], [0.3 * strength, 1, 0]])


def translate_x(image: Tensor, strength: float) -> Tensor:
    return affine(image, [[1, 0, 0.45 * strength * image.shape[-1]], [0, 1, 0]])


def translate_y(image: Tensor, strength: float) -> Tensor:
    return affine(image, [[1, 0, 0], [0, 1, 0.45 * strength * image.shape[-2]]])


def brightness(image: Tensor, strength: float) -> Tensor:
    return blend(image, torch.zeros_like(image), 1 + 0.9 * strength)


def contrast(image: Tensor, strength: float) -> Tensor:
    return blend(image, grayscale(image).mean().expand_as(image), 1 + 0.9 * strength)


def color(image: Tensor, strength: float) -> Tensor:
    return blend(image, grayscale(image), 1 + 0.9 * strength)


def sharpness(image: Tensor, strength: float) -> Tensor:
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    smooth = F.conv2d(F.pad(image[:, None], (1, 1, 1, 1), mode="replicate"), kernel[None, None])[:, 0]
    return blend(image, smooth, 1 + 0.9 * strength)


def posterize(image: Tensor, strength: float) -> Tensor:
    levels = 2 ** (8 - round(4 * abs(strength)))
    return torch.floor(image * 255 / (256 // levels)) * (256 // levels) / 255


def solarize(image: Tensor, strength: float) -> Tensor:
    threshold = 1 - abs(strength)
    return torch.where(image > threshold, 1 - image, image)


def auto_contrast(image: Tensor, strength: float) -> Tensor:
    low = image.amin(dim=(1, 2), keepdim=True)
    high = image.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (image - low) / span.clamp_min(1e-8), image)


def equalize(image: Tensor, strength: float) -> Tensor:
    levels = (image * 255).round().long().clamp_(0, 255)
    out = torch.empty_like(image)
    for channel, values in enumerate(levels):
        cdf = torch.bincount(values.flatten(), minlength=256).cumsum(0).float()
        first = cdf[cdf > 0][0]
        if cdf[-1] == first:  # a single level: nothing to spread
            out[channel] = image[channel]
            continue
        lut = ((cdf - first) / (cdf[-1] - first)).clamp_(0, 1)
        out[channel] = lut[values]
    return out


def identity(image: Tensor, strength: float) -> Tensor:
    return image


RAND_AUGMENT_OPS: dict[str, Callable[[Tensor, float], Tensor]] = {
    op.__name__: op for op in (identity, auto_contrast, equalize, rotate, solarize, color, posterize, contrast,
                               brightness, sharpness, shear_x, shear_y, translate_x, translate_y)
}


class RandAugment:
    """RandAugment (Cubuk et al. 2020): `num_ops` ops drawn uniformly, each at `magnitude` out of 10
    (jittered by a normal of std `magnitude_std`), with a random sign for the directional ones."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9, magnitude_std: float = 0.5,
                 ops: Sequence[str] = tuple(RAND_AUGMENT_OPS)):
        unknown = set(ops) - set(RAND_AUGMENT_OPS)
        if unknown:
            raise ValueError(f"RandAugment: unknown ops {sorted(unknown)}; available: {list(RAND_AUGMENT_OPS)}")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.magnitude_std = magnitude_std
        self.ops = [RAND_AUGMENT_OPS[name] for name in ops]

    def __call__(self, image: Tensor) -> Tensor:
        for index in torch.randint(len(self.ops), (self.num_ops,)).tolist():
            magnitude = self.magnitude + self.magnitude_std * torch.randn(()).item()
            strength = min(max(magnitude, 0.0), 10.0) / 10
            sign = 1 if torch.rand(()) < 0.5 else -1
            image = self.ops[index](image, sign * strength)
        return image
