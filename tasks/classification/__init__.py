"""Image classification: ClassificationTask, ImageFolderDataModule and SyntheticShapesDataModule."""

from .data import ImageFolderDataModule, SyntheticShapesDataModule
from .module import ClassificationTask

__all__ = ["ClassificationTask", "ImageFolderDataModule", "SyntheticShapesDataModule"]
