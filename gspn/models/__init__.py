"""GSPN models: the hierarchical backbone, its presets and the registry, checkpoints, summaries."""

from . import presets as _presets  # noqa: F401  (registers the presets)
from . import denoiser as _denoiser  # noqa: F401  (registers the denoiser presets)
from .backbone import GSPNBackbone
from .checkpoint import LoadReport, load_checkpoint, read_checkpoint
from .registry import create_model, list_models, register_model
from .summary import count_macs, count_params, model_summary

__all__ = ["GSPNBackbone", "create_model", "list_models", "register_model", "load_checkpoint", "read_checkpoint", "LoadReport",
           "model_summary", "count_params", "count_macs"]
