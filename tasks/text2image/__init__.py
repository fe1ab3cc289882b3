"""Text-to-image: Text2ImageTask (GSPN distilled into the self-attention of Stable Diffusion and SD-XL
UNets, or a small UNet trained for the CPU demo) and its caption data modules. diffusers and
transformers are imported only when a task is built."""

from .data import CaptionedShapesData, CaptionFolderData, LatentCaptionData
from .module import Text2ImageTask

__all__ = ["CaptionFolderData", "CaptionedShapesData", "LatentCaptionData", "Text2ImageTask"]
