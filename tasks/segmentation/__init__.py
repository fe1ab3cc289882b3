"""Semantic segmentation: SegmentationTask (UPerNet from mmsegmentation on a GSPN backbone), the
embedded ProceduralScenes data, labelled folders and ADE20K. mmsegmentation is imported only when a
segmentation model or the mmseg-based augmentation is built (`import_mmseg`)."""

from .backbone import GSPNSegBackbone
from .data import ADE20KDataModule, ProceduralScenesDataModule, SegmentationFolderDataModule
from .mmseg_setup import import_mmseg
from .module import SegmentationTask

__all__ = ["SegmentationTask", "ProceduralScenesDataModule", "SegmentationFolderDataModule", "ADE20KDataModule",
           "GSPNSegBackbone", "import_mmseg"]
