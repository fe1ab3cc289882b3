"""Segmentation data modules: the embedded procedural scenes, labelled folders, ADE20K.

Each exposes `num_classes`, `class_names` and `palette` (linked to the task by the `gspn` command).
Training samples are (image (3, H, W) in [0, 1], labels (H, W) with 255 ignored); evaluation
samples keep their own size (the task rescales for inference and maps predictions back), so batches
of images of different sizes need eval_batch_size 1. Prediction samples are (image, name).
"""

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from gspn.errors import ConfigError

from ..data import TaskDataModule
from ..images import UnlabelledImages
from .folders import LabelledFolder, pair_files
from .outputs import check_palette, default_palette
from .procedural import CLASSES, PALETTE, ProceduralScenes


class NamedImages(Dataset):
    """The images of a labelled dataset for `gspn predict`, named by index."""

    def __init__(self, dataset: Dataset, prefix: str):
        self.dataset, self.prefix = dataset, prefix

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        return self.dataset[index][0], f"{self.prefix}_{index:05d}"


class SegmentationDataModule(TaskDataModule):
    """The base of the segmentation data modules: classes, palette, loaders and `gspn predict`'s images.

    Args:
        class_names: one name per class (label value).
        palette: an [r, g, b] per class (default: generated).
        batch_size: training images per batch (per device; at least 2).
        eval_batch_size: images per batch of validation, test and prediction.
        num_workers: worker processes of each data loader (0: load in the main process).
        predict_root: a folder of images for `gspn predict` (default: the validation images), read one
            image per batch since their sizes may differ.
    """

    def __init__(self, class_names: Sequence[str], palette: Sequence[Sequence[int]] | None = None,
                 batch_size: int = 8, eval_batch_size: int = 1, num_workers: int = 2,
                 predict_root: str | None = None):
        super().__init__(batch_size, num_workers)
        if eval_batch_size < 1:
            raise ConfigError(f"{type(self).__name__}: eval_batch_size must be at least 1, got {eval_batch_size}")
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.palette = [list(colour) for colour in (palette or default_palette(self.num_classes))]
        check_palette(self.palette, self.num_classes, type(self).__name__)
        self.eval_batch_size = eval_batch_size
        self.predict_root = predict_root

    def setup_predict(self, fallback: Dataset, verify: bool = False) -> None:
        """predict_root's images (with `verify`, every unreadable one is named now), else `fallback`'s."""
        if self.predict_root:
            self.datasets["predict"] = UnlabelledImages(self.predict_root, verify_images="error" if verify else "off",
                                                        remedy="remove or repair them")
        else:
            self.datasets["predict"] = NamedImages(fallback, "image")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        # The images of a folder may each have their own size: one per batch.
        return self.loader("predict", batch_size=1 if self.predict_root else self.eval_batch_size)


class ProceduralScenesDataModule(SegmentationDataModule):
    """The embedded scenes (see procedural.py): discs, squares, lone bars and cross bars.

    Args:
        num_train: the number of training scenes.
        num_val: the number of validation scenes.
        num_test: the number of test scenes.
        image_size: the scenes' size in pixels, an int or [height, width] (at least 16).
        seed: the scenes (train, val and test use disjoint seeds).
        batch_size: training scenes per batch (per device; at least 2).
        eval_batch_size: scenes per batch of validation, test and prediction.
        num_workers: worker processes of each data loader (0: load in the main process).
        predict_root: a folder of images for `gspn predict` (default: the validation scenes), read one
            image per batch since their sizes may differ.
    """

    def __init__(self, num_train: int = 2048, num_val: int = 256, num_test: int = 256,
                 image_size: int | tuple[int, int] = 64, seed: int = 0, batch_size: int = 16,
                 eval_batch_size: int = 32, num_workers: int = 0, predict_root: str | None = None):
        super().__init__(CLASSES, PALETTE, batch_size, eval_batch_size, num_workers, predict_root)
        self.sizes = dict(train=num_train, val=num_val, test=num_test)
        self.image_size = image_size
        self.seed = seed

    def setup(self, stage: str) -> None:
        for offset, (split, length) in enumerate(self.sizes.items()):
            self.datasets[split] = ProceduralScenes(length, self.image_size, seed=self.seed * 3 + offset + 1000)
        self.setup_predict(self.datasets["val"])


class SegmentationFolderDataModule(SegmentationDataModule):
    """Your own data: root/images/<split>/... and root/masks/<split>/... with matching names.

    Images may have any image extension; masks are single-channel label images, grey (8 or 16 bits) or
    palette PNGs, 255 ignored. The training augmentation is mmsegmentation's (crop_size, scale,
    ratio_range, cat_max_ratio, photometric): random resize, random crop, horizontal flip (probability
    0.5), photometric distortion, padding to crop_size (labels padded with 255, ignored).

    Args:
        root: the folder holding images/<split>/ and masks/<split>/.
        class_names: one per label value.
        palette: an [r, g, b] per class (default: generated).
        splits: the folder name of each split, train and val needed (default {train: train, val: val});
            test falls back to val.
        reduce_zero_label: label 0 is "other" and ignored, 1..N become 0..N-1 (ADE20K's convention).
        crop_size: [height, width] of the training crops.
        scale: the target scale of the training resize (mmsegmentation's RandomResize: the image keeps
            its aspect and fits within scale times a factor drawn from ratio_range).
        ratio_range: the range of the factor of the training resize.
        cat_max_ratio: the largest fraction of a training crop a single class may cover
            (mmsegmentation's RandomCrop tries another crop otherwise).
        photometric: apply mmsegmentation's photometric distortion (PhotoMetricDistortion) in training.
        verify: read and check every image and mask when the data is set up (before training), and every
            image of predict_root before predicting.
        batch_size: training images per batch (per device; at least 2).
        eval_batch_size: images per batch of validation, test and prediction.
        num_workers: worker processes of each data loader (0: load in the main process).
        predict_root: a folder of images for `gspn predict` (default: the validation images), read one
            image per batch since their sizes may differ.
    """

    image_dir = "images"
    mask_dir = "masks"

    def __init__(self, root: str, class_names: Sequence[str], palette: Sequence[Sequence[int]] | None = None,
                 splits: dict[str, str] | None = None, reduce_zero_label: bool = False,
                 crop_size: tuple[int, int] = (512, 512), scale: tuple[int, int] = (2048, 512),
                 ratio_range: tuple[float, float] = (0.5, 2.0), cat_max_ratio: float = 0.75, photometric: bool = True,
                 verify: bool = True, batch_size: int = 8, eval_batch_size: int = 1, num_workers: int = 4,
                 predict_root: str | None = None):
        super().__init__(class_names, palette, batch_size, eval_batch_size, num_workers, predict_root)
        self.root = Path(root)
        self.splits = splits or dict(train="train", val="val")
        if "train" not in self.splits or "val" not in self.splits:
            raise ConfigError(f"{type(self).__name__}: splits needs folder names for train and val, got {self.splits}")
        self.reduce_zero_label = reduce_zero_label
        self.augmentation = dict(crop_size=crop_size, scale=scale, ratio_range=ratio_range,
                                 cat_max_ratio=cat_max_ratio, photometric=photometric)
        self.verify = verify

    def split(self, name: str, transform=None) -> LabelledFolder:
        folder = self.splits.get(name, self.splits["val"])
        pairs = pair_files(self.root / self.image_dir / folder, self.root / self.mask_dir / folder)
        dataset = LabelledFolder(pairs, self.num_classes, self.reduce_zero_label, transform)
        if self.verify:
            dataset.verify()
        return dataset

    def setup(self, stage: str) -> None:
        from .transforms import TrainAugmentation

        if stage == "fit":
            self.datasets["train"] = self.split("train", TrainAugmentation(**self.augmentation))
        if stage in ("fit", "validate"):
            self.datasets["val"] = self.split("val")
        if stage == "test":
            self.datasets["test"] = self.split("test")
        if stage == "predict":
            self.setup_predict(self.split("val") if not self.predict_root else None, self.verify)


class ADE20KDataModule(SegmentationFolderDataModule):
    """ADE20K (SceneParsing, 150 classes) in its official layout; class names and palette are mmsegmentation's.

    Label 0 is ignored (reduce_zero_label); validation, test and prediction read one image per batch.

    Args:
        root: root/ADEChallengeData2016 or root itself, holding images/{training,validation} and
            annotations/{training,validation}.
        crop_size: [height, width] of the training crops.
        scale: the target scale of the training resize (mmsegmentation's RandomResize: the image keeps
            its aspect and fits within scale times a factor drawn from ratio_range).
        ratio_range: the range of the factor of the training resize.
        cat_max_ratio: the largest fraction of a training crop a single class may cover
            (mmsegmentation's RandomCrop tries another crop otherwise).
        photometric: apply mmsegmentation's photometric distortion (PhotoMetricDistortion) in training.
        verify: read and check every image and mask when the data is set up (before training), and every
            image of predict_root before predicting.
        batch_size: training images per batch (per device; at least 2).
        num_workers: worker processes of each data loader (0: load in the main process).
        predict_root: a folder of images for `gspn predict` (default: the validation images), read one
            image per batch since their sizes may differ.
    """

    mask_dir = "annotations"

    def __init__(self, root: str, crop_size: tuple[int, int] = (512, 512), scale: tuple[int, int] = (2048, 512),
                 ratio_range: tuple[float, float] = (0.5, 2.0), cat_max_ratio: float = 0.75, photometric: bool = True,
                 verify: bool = False, batch_size: int = 8, num_workers: int = 4, predict_root: str | None = None):
        from .mmseg_setup import import_mmseg

        import_mmseg()
        from mmseg.datasets import ADE20KDataset

        folder = Path(root) / "ADEChallengeData2016"
        meta = ADE20KDataset.METAINFO
        super().__init__(str(folder if folder.is_dir() else root), list(meta["classes"]), meta["palette"],
                         splits=dict(train="training", val="validation"), reduce_zero_label=True, verify=verify,
                         batch_size=batch_size, eval_batch_size=1, num_workers=num_workers,
                         predict_root=predict_root, crop_size=crop_size, scale=scale, ratio_range=ratio_range,
                         cat_max_ratio=cat_max_ratio, photometric=photometric)
