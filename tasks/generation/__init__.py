"""Class-conditional image generation: GenerationTask (diffusion with a GSPN denoiser, diffusers'
schedulers, classifier-free guidance, FID/KID) and its data modules. diffusers is imported only
when a task is built."""

from .data import ImageFolderGenerationData, LatentFileData, SyntheticShapesGenerationData
from .module import GenerationTask

__all__ = ["GenerationTask", "ImageFolderGenerationData", "LatentFileData", "SyntheticShapesGenerationData"]
