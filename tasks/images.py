"""Reading image files for every task: listing a folder, decoding with Pillow into float tensors,
and an optional up-front scan that names every file that cannot be read."""

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class UnreadableImageError(RuntimeError):
    pass


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below `folder`, sorted."""
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: str | Path, mode: str = "RGB") -> Tensor:
    """The image at `path` as (C, H, W) float in [0, 1] ("RGB") or (H, W) int64 ("L", "P": labels)."""
    try:
        with Image.open(path) as image:
            image.load()
            if mode in ("L", "P"):
                if image.mode not in ("L", "P", "I", "I;16"):
                    image = image.convert("L")
                return torch.from_numpy(np.array(image, dtype=np.int64))
            array = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


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


def check_readable(paths: list[Path], policy: str, owner: str) -> list[Path]:
    """Apply a data module's `verify_images` policy: "off" returns paths unchanged, "error" raises
    naming every unreadable file, "skip" drops them with a warning naming each."""
    if policy == "off":
        return paths
    if policy not in ("error", "skip"):
        raise ValueError(f"{owner}: verify_images must be 'off', 'error' or 'skip', got {policy!r}")
    bad = find_unreadable(paths)
    if bad and policy == "error":
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
        raise UnreadableImageError(f"{owner}: {len(bad)} unreadable image(s):\n{listing}\n"
                                   "(set verify_images: skip to leave them out)")
    for path, reason in bad:
        warnings.warn(f"{owner}: skipping unreadable image {path}: {reason}")
    skipped = {path for path, _ in bad}
    return [path for path in paths if path not in skipped]


class UnlabelledImages(Dataset):
    """The images of a folder for `gspn predict`: (transformed image, file path)."""

    def __init__(self, root: str | Path, transform: Callable[[Tensor], Tensor] | None = None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"predict_root: {root} is not a folder")
        self.paths = list_images(root)
        if not self.paths:
            raise FileNotFoundError(f"predict_root: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        image = read_image(self.paths[index])
        return (self.transform(image) if self.transform else image), str(self.paths[index])
