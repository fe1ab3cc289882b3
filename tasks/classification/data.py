"""Classification data modules: ImageNet-style folders, and the embedded SyntheticShapes dataset.

Every data module exposes `num_classes` once constructed; the `gspn` command links it to the model.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .shapes import CLASSES, SyntheticShapes
from .transforms import (
    Compose,
    Normalize,
    RandAugment,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCenterCrop,
    Transform,
    pil_to_tensor,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class EpochShuffleSampler(DistributedSampler):
    """A DistributedSampler (shuffled by (seed, epoch), split over the ranks) that yields keys
    (index, seed, epoch), so that each sample's augmentation can be drawn from its own seed."""

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return ((index, self.seed, self.epoch) for index in super().__iter__())


class SeededSamples(Dataset):
    """Reads `dataset[index]` for a key (index, seed, epoch) with torch's generator seeded from the key:
    the augmentation of every sample is fixed by the key, whatever the workers, ranks or resumption."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Tensor, int]:
        index, seed, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0]))
            return self.dataset[index]


class ClassificationDataModule(LightningDataModule):
    """Loaders over the datasets a subclass builds in `setup`: train, val, test; predict uses val.

    The training order and augmentation are functions of (seed, epoch) only, with the seed from
    `seed_everything` (Lightning's PL_GLOBAL_SEED), so a resumed run sees the same data.
    """

    num_classes: int

    def __init__(self, batch_size: int = 64, num_workers: int = 4):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, Dataset] = {}

    def loader(self, dataset: Dataset, sampler: Sampler | None = None, drop_last: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        trainer = self.trainer
        sampler = EpochShuffleSampler(dataset, num_replicas=trainer.world_size if trainer else 1,
                                      rank=trainer.global_rank if trainer else 0,
                                      seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), drop_last=True)
        return self.loader(SeededSamples(dataset), sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["val"])


class ImageFolder(Dataset):
    """Images under root/<class name>/..., decoded with Pillow; labels index `classes`."""

    def __init__(self, root: str | Path, classes: list[str], transform: Transform):
        self.transform = transform
        self.samples = [(path, label) for label, name in enumerate(classes)
                        for path in sorted((Path(root) / name).rglob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(pil_to_tensor(image)), label


class ImageFolderDataModule(ClassificationDataModule):
    """ImageNet-style folders: root/train/<class>/*.jpg and root/val/<class>/*.jpg (val also serves test).

    Training: random resized crop, horizontal flip, RandAugment (rand_augment_ops ops at
    rand_augment_magnitude out of 10; 0 ops disables it), normalise, random erasing.
    Evaluation: resize to image_size / crop_pct, centre crop, normalise.
    """

    def __init__(self, root: str, image_size: int = 224, batch_size: int = 128, num_workers: int = 8,
                 crop_pct: float = 0.875, rand_augment_ops: int = 2, rand_augment_magnitude: float = 9,
                 random_erasing: float = 0.25):
        super().__init__(batch_size, num_workers)
        self.root = Path(root)
        self.image_size = image_size
        self.crop_pct = crop_pct
        self.rand_augment_ops = rand_augment_ops
        self.rand_augment_magnitude = rand_augment_magnitude
        self.random_erasing = random_erasing
        train = self.root / "train"
        if not train.is_dir():
            raise FileNotFoundError(f"ImageFolderDataModule: {train} is not a folder (expected root/train/<class>/...)")
        self.classes = sorted(entry.name for entry in train.iterdir() if entry.is_dir())
        self.num_classes = len(self.classes)

    def train_transform(self) -> Transform:
        steps = [RandomResizedCrop(self.image_size), RandomHorizontalFlip()]
        if self.rand_augment_ops > 0:
            steps.append(RandAugment(self.rand_augment_ops, self.rand_augment_magnitude))
        steps += [Normalize(), RandomErasing(self.random_erasing)]
        return Compose(*steps)

    def eval_transform(self) -> Transform:
        return Compose(ResizeCenterCrop(self.image_size, self.crop_pct), Normalize())

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.datasets["train"] = ImageFolder(self.root / "train", self.classes, self.train_transform())
        val = ImageFolder(self.root / "val", self.classes, self.eval_transform())
        self.datasets.update(val=val, test=val)


class SyntheticShapesDataModule(ClassificationDataModule):
    """The embedded SyntheticShapes dataset (see shapes.py): no download, deterministic per seed.

    Train, val and test are disjoint draws (seeds seed, seed + 1, seed + 2). Images are normalised
    to zero mean and unit spread; there is no augmentation (flips would change some classes).
    """

    num_classes = len(CLASSES)

    def __init__(self, num_train: int = 4096, num_val: int = 512, num_test: int = 512, image_size: int = 32,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0, noise: float = 0.08):
        super().__init__(batch_size, num_workers)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.image_size = image_size
        self.seed = seed
        self.noise = noise

    def setup(self, stage: str) -> None:
        normalize = Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        for offset, (split, size) in enumerate(self.sizes.items()):
            self.datasets[split] = SyntheticShapes(size, self.image_size, self.seed + offset, self.noise, transform=normalize)

