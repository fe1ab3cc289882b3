"""Generation data modules: images in [-1, 1] with their class labels.

- SyntheticShapesGenerationData: the embedded SyntheticShapes dataset (demo and tests).
- ImageFolderGenerationData: root/train/<class>/... (and root/val/<class>/... when present), ADM's
  preprocessing: resize the short side, centre crop, random horizontal flip in training.
- LatentFileData: latents pre-extracted by `extract_latents` (latent diffusion without encoding per step).

Validation has two loaders: "val" (the real images samples are compared with) and "reference", a
disjoint real split of the same size for the real-versus-real FID. `gspn predict` reads
`samples_per_class` requests (label, index) for each of `predict_classes` (names or indices; all
classes when not given); the task draws each sample's noise from (seed, label, index).
"""

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import kornia.augmentation as K
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from gspn.errors import ConfigError, DataError

from ..data import TaskDataModule
from ..images import ImageFolder, class_folders
from ..shapes import CLASSES, SyntheticShapes
from ..transforms import Pipeline, eval_pipeline, normalize

LATENT_FILE_KEYS = ("latents", "labels", "classes", "image_size")  # what extract_latents saves
TO_SIGNED = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # [0, 1] -> [-1, 1]


class SampleRequests(Dataset):
    """(label, index) for `per_class` samples of each class in `labels`."""

    def __init__(self, labels: Sequence[int], per_class: int):
        self.keys = [(label, index) for label in labels for index in range(per_class)]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.keys[i]


class GenerationDataModule(TaskDataModule):
    """The base of the generation data modules.

    Shared by the generation data modules: `classes`, `num_classes`, `image_size` (pixels), the
    reference loader and the predict requests. Subclasses fill "train", "val", "reference".

    Args:
        batch_size: images per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        samples_per_class: how many samples `gspn predict` generates for each class it is asked for
            (at least 1).
        predict_classes: the classes `gspn predict` generates, names or indices (all classes when not
            given); an unknown one is an error naming the known ones.
    """

    classes: list[str]

    def __init__(self, batch_size: int, num_workers: int, samples_per_class: int,
                 predict_classes: Sequence[int | str] | None):
        super().__init__(batch_size, num_workers)
        if samples_per_class < 1:
            raise ConfigError(f"{type(self).__name__}: samples_per_class must be at least 1, got {samples_per_class}")
        self.samples_per_class = samples_per_class
        self.predict_classes = predict_classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def predict_labels(self) -> list[int]:
        """predict_classes as indices; an unknown name or index is an error naming the known ones."""
        if self.predict_classes is None:
            return list(range(self.num_classes))
        labels = []
        for entry in self.predict_classes:
            if isinstance(entry, str) and entry in self.classes:
                labels.append(self.classes.index(entry))
            elif isinstance(entry, int) and 0 <= entry < self.num_classes:
                labels.append(entry)
            else:
                raise ConfigError(f"{type(self).__name__}: predict_classes: {entry!r} is not a class; expected an "
                                  f"index 0-{self.num_classes - 1} or one of {', '.join(self.classes)}")
        return labels

    def setup_predict(self) -> None:
        self.datasets["predict"] = SampleRequests(self.predict_labels(), self.samples_per_class)

    def val_dataloader(self) -> list[DataLoader]:
        return [self.loader("val"), self.loader("reference")]


class SyntheticShapesGenerationData(GenerationDataModule):
    """SyntheticShapes in [-1, 1], held in memory (no augmentation: flips would change some classes).

    Train, val and reference are disjoint draws (seeds seed, seed + 1, seed + 3; seed + 2 is the
    classifier's test split).

    Args:
        num_train: the number of training images.
        num_val: the number of validation images, and of reference images.
        image_size: the side of the images in pixels.
        batch_size: images per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        seed: the draw: train, val and reference use seed, seed + 1 and seed + 3.
        noise: the standard deviation of the pixel noise added to every image (in [0, 1]).
        samples_per_class: how many samples `gspn predict` generates for each class it is asked for
            (at least 1).
        predict_classes: the classes `gspn predict` generates, names or indices (all classes when not
            given); an unknown one is an error naming the known ones.
    """

    classes = list(CLASSES)

    def __init__(self, num_train: int = 8192, num_val: int = 256, image_size: int = 32, batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0, noise: float = 0.08, samples_per_class: int = 8,
                 predict_classes: Sequence[int | str] | None = None):
        super().__init__(batch_size, num_workers, samples_per_class, predict_classes)
        self.sizes = {"train": (num_train, seed), "val": (num_val, seed + 1), "reference": (num_val, seed + 3)}
        self.image_size = image_size
        self.noise = noise
        self.predict_labels()

    def setup(self, stage: str) -> None:
        # Rendered once into memory (8192 images at 32 x 32: 100 MB): every epoch would otherwise
        # render them again, about a fifth of a CPU training step.
        for split, (size, seed) in self.sizes.items():
            shapes = SyntheticShapes(size, self.image_size, seed, self.noise)
            images, labels = zip(*(shapes[i] for i in range(size)))
            self.datasets[split] = TensorDataset(torch.stack(images) * 2 - 1, torch.tensor(labels))
        if stage == "predict":
            self.setup_predict()


class ImageFolderGenerationData(GenerationDataModule):
    """Class folders root/train/<class>/..., with ADM's preprocessing.

    Validation reads root/val/<class>/... when it exists, else the last num_val training images (then
    left out of training). The reference split is num_val further training images, never trained on.
    Every image is resized (short side) and centre-cropped to image_size; training images are flipped
    horizontally with probability hflip.

    Args:
        root: the folder holding train/<class>/ (and val/<class>/ when there is one).
        image_size: the side in pixels the images are resized (short side) and centre-cropped to.
        batch_size: images per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        num_val: the number of validation images (taken from training when there is no val folder),
            and of reference images.
        hflip: the probability of a horizontal flip in training.
        verify_images: unreadable images: "off" (an unreadable file fails when it is read, naming it),
            "error" (scan every file first and name all unreadable ones) or "skip" (scan, and leave
            them out with a warning each).
        samples_per_class: how many samples `gspn predict` generates for each class it is asked for
            (at least 1).
        predict_classes: the classes `gspn predict` generates, names or indices (all classes when not
            given); an unknown one is an error naming the known ones.
    """

    def __init__(self, root: str, image_size: int = 256, batch_size: int = 32, num_workers: int = 8,
                 num_val: int = 1000, hflip: float = 0.5, verify_images: Literal["off", "error", "skip"] = "off",
                 samples_per_class: int = 4,
                 predict_classes: Sequence[int | str] | None = None):
        super().__init__(batch_size, num_workers, samples_per_class, predict_classes)
        self.root = Path(root)
        self.image_size = image_size
        self.num_val = num_val
        self.hflip = hflip
        self.verify_images = verify_images
        self.classes = class_folders(self.root / "train")
        self.predict_labels()

    def setup(self, stage: str) -> None:
        centre_crop = eval_pipeline(self.image_size, 1.0, **TO_SIGNED)
        train_steps = [K.Resize(self.image_size, side="short", antialias=True), K.CenterCrop(self.image_size)]
        if self.hflip > 0:
            train_steps.append(K.RandomHorizontalFlip(p=self.hflip))
        augmented = Pipeline(*train_steps, normalize(**TO_SIGNED))
        train = ImageFolder(self.root / "train", self.classes, augmented, self.verify_images)
        plain = ImageFolder(self.root / "train", self.classes, centre_crop, self.verify_images)
        held_out = 2 * self.num_val if not (self.root / "val").is_dir() else self.num_val
        if len(train) <= held_out:
            raise DataError(f"ImageFolderGenerationData: {self.root / 'train'} has {len(train)} images, not more "
                            f"than the {held_out} held out for validation (lower num_val)")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
        kept, spare = order[:-held_out], order[-held_out:]
        self.datasets["train"] = Subset(train, kept)
        self.datasets["reference"] = Subset(plain, spare[:self.num_val])
        if (self.root / "val").is_dir():
            self.datasets["val"] = ImageFolder(self.root / "val", self.classes, centre_crop, self.verify_images)
        else:
            self.datasets["val"] = Subset(plain, spare[self.num_val:])
        if stage == "predict":
            self.setup_predict()


def read_latents(path: Path) -> dict:
    """The contents of a file written by `extract_latents`, read with `weights_only=True` (no code is
    unpickled); a file that cannot be read or lacks a key is a DataError naming it."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise DataError(f"LatentFileData: {path}: cannot read the latents file ({type(error).__name__}: a truncated "
                        "file, another format, or objects beyond tensors and plain containers); write it with "
                        "extract_latents") from error
    missing = [key for key in LATENT_FILE_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise DataError(f"LatentFileData: {path}: lacks {', '.join(missing)} (write it with extract_latents)")
    return content


class LatentFileData(GenerationDataModule):
    """Latents saved by `extract_latents`, for latent diffusion without encoding at every step.

    Train on all but 2 * num_val of them; val and reference are the rest (decoded by the task for the
    metrics).

    Args:
        path: the file written by `extract_latents` (read with `weights_only=True`).
        batch_size: latents per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        num_val: the number of validation latents, and of reference latents (the file must hold more
            than 2 * num_val).
        samples_per_class: how many samples `gspn predict` generates for each class it is asked for
            (at least 1).
        predict_classes: the classes `gspn predict` generates, names or indices (all classes when not
            given); an unknown one is an error naming the known ones.
    """

    def __init__(self, path: str, batch_size: int = 32, num_workers: int = 2, num_val: int = 1000,
                 samples_per_class: int = 4, predict_classes: Sequence[int | str] | None = None):
        super().__init__(batch_size, num_workers, samples_per_class, predict_classes)
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"LatentFileData: {self.path} is not a file (write it with extract_latents)")
        content = read_latents(self.path)
        self.latents: Tensor = content["latents"]
        self.labels: Tensor = content["labels"]
        self.classes = list(content["classes"])
        self.image_size = int(content["image_size"])
        self.num_val = num_val
        if len(self.latents) <= 2 * num_val:
            raise DataError(f"LatentFileData: {self.path} holds {len(self.latents)} latents, not more than "
                            f"2 * num_val = {2 * num_val}")
        self.predict_labels()

    def setup(self, stage: str) -> None:
        latents, labels, n = self.latents.float(), self.labels, self.num_val
        self.datasets["train"] = TensorDataset(latents[:-2 * n], labels[:-2 * n])
        self.datasets["val"] = TensorDataset(latents[-2 * n:-n], labels[-2 * n:-n])
        self.datasets["reference"] = TensorDataset(latents[-n:], labels[-n:])
        if stage == "predict":
            self.setup_predict()
