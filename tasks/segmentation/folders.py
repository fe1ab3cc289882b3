"""Labelled image folders: pairing images with masks by name and checking every pair.

A mask must have its image's size and hold labels in [0, num_classes) or 255 (ignored), after the
optional reduction of label 0 to "ignored" (ADE20K). Every violation is an error naming the file.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gspn.errors import DataError

from ..images import list_images, read_image, read_labels
from .segmentor import IGNORE_INDEX


class BadMaskError(DataError):
    pass


def pair_files(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by relative path without extension; an image without a mask is an error."""
    if not image_dir.is_dir():
        raise DataError(f"images folder {image_dir} does not exist")
    if not mask_dir.is_dir():
        raise DataError(f"masks folder {mask_dir} does not exist")
    masks = {path.relative_to(mask_dir).with_suffix(""): path for path in list_images(mask_dir)}
    pairs, orphans = [], []
    for image in list_images(image_dir):
        mask = masks.get(image.relative_to(image_dir).with_suffix(""))
        (orphans.append(image) if mask is None else pairs.append((image, mask)))
    if orphans:
        shown = ", ".join(str(path) for path in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        raise DataError(f"{len(orphans)} image(s) without a mask of the same name in {mask_dir}: {shown}")
    if not pairs:
        raise DataError(f"no images under {image_dir}")
    return pairs


def read_pair(image_path: Path, mask_path: Path, num_classes: int, reduce_zero_label: bool) -> tuple[Tensor, Tensor]:
    """The image (3, H, W) in [0, 1] and its checked labels (H, W)."""
    image = read_image(image_path)
    mask = read_labels(mask_path)
    if tuple(mask.shape) != tuple(image.shape[1:]):
        raise BadMaskError(f"mask {mask_path} is {tuple(mask.shape)} (height, width) but its image {image_path} is "
                           f"{tuple(image.shape[1:])}")
    if reduce_zero_label:  # label 0 means "other" and is ignored; 1..N become 0..N-1
        mask = torch.where(mask == 0, IGNORE_INDEX, mask - 1)
    bad = mask[(mask >= num_classes) & (mask != IGNORE_INDEX) | (mask < 0)].unique()
    if len(bad):
        raise BadMaskError(f"mask {mask_path} has labels {bad.tolist()[:10]} outside [0, {num_classes}) and not "
                           f"{IGNORE_INDEX} (ignored)" + (" after reducing label 0" if reduce_zero_label else ""))
    return image, mask


class LabelledFolder(Dataset):
    """Checked (image, labels) pairs, passed through `transform(image, labels)` if given.

    Each pair is read and checked when it is loaded (`verify` checks them all at once).

    Args:
        pairs: (image, mask) file pairs, e.g. from `pair_files`.
        num_classes: labels must be in [0, num_classes) or 255 (ignored).
        reduce_zero_label: label 0 is "other" and ignored, 1..N become 0..N-1 (ADE20K's convention).
        transform: a function of (image, labels) returning the transformed pair (training augmentation).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], num_classes: int, reduce_zero_label: bool = False,
                 transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None):
        self.pairs, self.num_classes, self.reduce_zero_label, self.transform = pairs, num_classes, reduce_zero_label, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = read_pair(*self.pairs[index], self.num_classes, self.reduce_zero_label)
        return self.transform(image, mask) if self.transform else (image, mask)

    def verify(self) -> None:
        """Read and check every pair now: raises on the first bad file."""
        for pair in self.pairs:
            read_pair(*pair, self.num_classes, self.reduce_zero_label)
