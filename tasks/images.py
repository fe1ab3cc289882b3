"""Reading image files for every task: listing a folder, decoding with Pillow into float tensors or
label masks, an optional up-front scan that names every file that cannot be read, and the datasets
built on them: class folders (root/<class>/<images>, `class_folders` and `ImageFolder`, read by the
classification and generation data modules) and a folder of unlabelled images (`gspn predict`)."""

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from gspn.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class UnreadableImageError(DataError):
    pass


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below `folder`, sorted."""
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)


def decode(path: str | Path, convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """`convert` applied to the decoded image at `path`; a file Pillow cannot read is an error naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return convert(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from error


def read_image(path: str | Path) -> Tensor:
    """The image at `path` as (3, H, W) float in [0, 1]."""
    array = decode(path, lambda image: np.array(image.convert("RGB"), dtype=np.uint8))
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def label_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("L", "P", "I", "I;16"):
        return np.array(image, dtype=np.int64)
    return np.array(image.convert("RGB" if len(image.getbands()) >= 3 else "L"), dtype=np.int64)


def read_labels(path: str | Path) -> Tensor:
    """The mask at `path` as (H, W) int64 class indices, as a grey (8 or 16 bits) or palette ("P") image
    stores them. A colour image is an error: colours are not class indices (a grey image saved as
    RGB, its three channels equal, is read as grey)."""
    labels = decode(path, label_array)
    if labels.ndim == 3:
        if (labels != labels[..., :1]).any():
            raise DataError(f"mask {path} is an RGB colour image; a mask holds one class index per pixel "
                            "(a single-channel grey or palette 'P' image, 255 ignored)")
        labels = labels[..., 0]
    return torch.from_numpy(np.ascontiguousarray(labels))


def find_unreadable(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(path, reason) for each file Pillow cannot fully decode."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, UnidentifiedImageError, ValueError) as error:
            bad.append((path, str(error)))
    return bad


def check_readable(paths: list[Path], policy: str, owner: str,
                   remedy: str = "set verify_images: skip to leave them out") -> list[Path]:
    """Apply a data module's `verify_images` policy: "off" returns paths unchanged, "error" raises
    naming every unreadable file (and the `remedy`), "skip" drops them with a warning naming each."""
    if policy == "off":
        return paths
    if policy not in ("error", "skip"):
        raise ConfigError(f"{owner}: verify_images must be 'off', 'error' or 'skip', got {policy!r}")
    bad = find_unreadable(paths)
    if bad and policy == "error":
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
        raise UnreadableImageError(f"{owner}: {len(bad)} unreadable image(s):\n{listing}\n({remedy})")
    for path, reason in bad:
        warnings.warn(f"{owner}: skipping unreadable image {path}: {reason}")
    skipped = {path for path, _ in bad}
    return [path for path in paths if path not in skipped]


class UnlabelledImages(Dataset):
    """The images of a folder for `gspn predict`: (transformed image, file path). verify_images,
    remedy: the data module's policy for unreadable files, as in training (see `check_readable`)."""

    def __init__(self, root: str | Path, transform: Callable[[Tensor], Tensor] | None = None,
                 verify_images: str = "off", remedy: str = "set verify_images: skip to leave them out"):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"predict_root: {root} is not a folder")
        self.paths = check_readable(list_images(root), verify_images, f"predict_root {root}", remedy)
        if not self.paths:
            raise DataError(f"predict_root: no readable images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        image = read_image(self.paths[index])
        return (self.transform(image) if self.transform else image), str(self.paths[index])


def class_folders(root: Path) -> list[str]:
    """The class names: the sub-folders of root, sorted. An empty class folder is an error."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected {root}/<class>/<images>)")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class>/<images>)")
    empty = [name for name in classes if not list_images(root / name)]
    if empty:
        raise DataError(f"{root}: class folder(s) without images: {', '.join(empty)} "
                        "(remove them, or add images)")
    return classes


class ImageFolder(Dataset):
    """Images under root/<class name>/..., decoded with Pillow; labels index `classes`.

    verify_images: "off" (an unreadable file fails when it is read, naming it), "error" (scan every
    file first and name all unreadable ones) or "skip" (scan, and leave them out with a warning each).
    """

    def __init__(self, root: str | Path, classes: list[str], transform: Callable[[Tensor], Tensor],
                 verify_images: str = "off"):
        root = Path(root)
        self.transform = transform
        self.samples = []
        for label, name in enumerate(classes):
            if not (root / name).is_dir():
                raise DataError(f"ImageFolder: {root / name} is missing (classes come from the training split)")
            paths = check_readable(list_images(root / name), verify_images, f"ImageFolder {root}")
            self.samples += [(path, label) for path in paths]
        if not self.samples:
            raise DataError(f"ImageFolder: no images in the class folders of {root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.transform(read_image(path)), label
