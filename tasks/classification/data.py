"""Classification data modules: ImageNet-style folders, and the embedded SyntheticShapes dataset.

Every data module exposes `num_classes` (and `classes`, their names) once constructed; the `gspn`
command links num_classes to the task. `predict_root`, a folder of unlabelled images, is what
`gspn predict` classifies (the validation split when it is not given).
"""

from pathlib import Path
from typing import Literal

from ..data import TaskDataModule
from ..images import ImageFolder, UnlabelledImages, class_folders
from ..shapes import CLASSES, MEAN, STD, SyntheticShapes
from ..transforms import IMAGENET_MEAN, IMAGENET_STD, Pipeline, eval_pipeline, normalize
from .transforms import train_pipeline


class ImageFolderDataModule(TaskDataModule):
    """ImageNet-style folders: root/train/<class>/*.jpg and root/val/<class>/*.jpg (val also serves test).

    Training pipeline (every step configurable; see transforms.train_pipeline): random resized crop to
    image_size with area fraction crop_scale and aspect crop_ratio, horizontal flip with probability
    hflip, RandAugment (rand_augment_ops at rand_augment_magnitude of 30; 0 ops disables it),
    normalisation, random erasing with probability random_erasing. Evaluation and prediction: resize
    the short side to image_size / crop_pct, centre crop, normalise.

    The defaults suit a small data set of one's own: a mild crop that keeps most of the image, no flip,
    no RandAugment, no erasing, the whole image at evaluation (crop_pct 1), so that no class is changed
    by a flip or a colour shift. The ImageNet recipe (configs/imagenet.yaml) sets its heavy augmentation
    explicitly: crop_scale (0.08, 1), hflip 0.5, two RandAugment ops at 27, erasing 0.25, crop_pct 0.875.

    Args:
        root: the folder holding train/<class>/ and val/<class>/ (the classes are train's class folders).
        image_size: the side in pixels of the training crops and of the evaluation centre crop.
        batch_size: images per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        crop_pct: evaluation and prediction resize the short side to image_size / crop_pct, then centre
            crop image_size (1: the whole image).
        crop_scale: the area fraction (min, max) of the training random resized crop.
        crop_ratio: the aspect ratio (min, max) of the training random resized crop.
        hflip: the probability of a horizontal flip in training.
        rand_augment_ops: the number of RandAugment ops per training image (0 disables RandAugment).
        rand_augment_magnitude: the magnitude of the RandAugment ops, of 30 (kornia's 0-30 scale).
        random_erasing: the probability of random erasing in training.
        verify_images: unreadable images (of the splits and of predict_root): "off" (an unreadable file
            fails when it is read, naming it), "error" (scan every file first and name all unreadable
            ones) or "skip" (scan, and leave them out with a warning each).
        predict_root: a folder of unlabelled images that `gspn predict` classifies (default: the
            validation split).
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD  # the normalisation of every pipeline (and of exported weights)

    def __init__(self, root: str, image_size: int = 224, batch_size: int = 128, num_workers: int = 8,
                 crop_pct: float = 1.0, crop_scale: tuple[float, float] = (0.5, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.0, rand_augment_ops: int = 0,
                 rand_augment_magnitude: int = 27, random_erasing: float = 0.0,
                 verify_images: Literal["off", "error", "skip"] = "off", predict_root: str | None = None):
        super().__init__(batch_size, num_workers)
        self.root = Path(root)
        self.image_size = image_size
        self.crop_pct = crop_pct
        self.augmentation = dict(crop_scale=tuple(crop_scale), crop_ratio=tuple(crop_ratio), hflip=hflip,
                                 rand_augment_ops=rand_augment_ops, rand_augment_magnitude=rand_augment_magnitude,
                                 random_erasing=random_erasing)
        self.verify_images = verify_images
        self.predict_root = predict_root
        self.classes = class_folders(self.root / "train")
        self.num_classes = len(self.classes)

    def setup(self, stage: str) -> None:
        evaluation = eval_pipeline(self.image_size, self.crop_pct, self.mean, self.std)
        if stage == "fit":
            augmentation = train_pipeline(self.image_size, **self.augmentation, mean=self.mean, std=self.std)
            self.datasets["train"] = ImageFolder(self.root / "train", self.classes, augmentation, self.verify_images)
        if stage == "predict" and self.predict_root:
            self.datasets["predict"] = UnlabelledImages(self.predict_root, evaluation, self.verify_images)
            return
        val = ImageFolder(self.root / "val", self.classes, evaluation, self.verify_images)
        self.datasets.update(val=val, test=val)


class SyntheticShapesDataModule(TaskDataModule):
    """The embedded SyntheticShapes dataset (tasks/shapes.py): no download, deterministic per seed.

    Train, val and test are disjoint draws (seeds seed, seed + 1, seed + 2). Images are normalised
    to zero mean and unit spread; there is no augmentation (flips would change some classes).

    Args:
        num_train: the number of training images.
        num_val: the number of validation images.
        num_test: the number of test images.
        image_size: the side of the images in pixels.
        batch_size: images per batch (per device).
        num_workers: worker processes of each data loader (0: load in the main process).
        seed: the draw: train, val and test use seed, seed + 1 and seed + 2.
        noise: the standard deviation of the pixel noise added to every image (in [0, 1]).
        predict_root: a folder of images that `gspn predict` classifies, resized to image_size
            (default: the validation split).
    """

    classes = list(CLASSES)
    num_classes = len(CLASSES)
    mean, std = MEAN, STD

    def __init__(self, num_train: int = 4096, num_val: int = 512, num_test: int = 512, image_size: int = 32,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0, noise: float = 0.08,
                 predict_root: str | None = None):
        super().__init__(batch_size, num_workers)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.image_size = image_size
        self.seed = seed
        self.noise = noise
        self.predict_root = predict_root

    def setup(self, stage: str) -> None:
        for offset, (split, size) in enumerate(self.sizes.items()):
            self.datasets[split] = SyntheticShapes(size, self.image_size, self.seed + offset, self.noise,
                                                   transform=Pipeline(normalize(self.mean, self.std)))
        if stage == "predict" and self.predict_root:
            self.datasets["predict"] = UnlabelledImages(self.predict_root,
                                                        eval_pipeline(self.image_size, 1.0, self.mean, self.std))
