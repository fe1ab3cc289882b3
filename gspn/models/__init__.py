"""GSPN models: the hierarchical backbone, its presets and the registry, checkpoints, weights folders,
summaries."""

from . import presets as _presets  # noqa: F401  (registers the presets)
from . import denoiser as _denoiser  # noqa: F401  (registers the denoiser presets)
from .backbone import Backbone, GSPNBackbone
from .checkpoint import LoadReport, load_checkpoint, read_checkpoint, read_weights
from .pretrained import from_pretrained, save_pretrained
from .registry import create_model, list_models, register_model
from .summary import count_macs, count_params, model_summary

__all__ = ["Backbone", "GSPNBackbone", "create_model", "list_models", "register_model", "load_checkpoint", "read_checkpoint", "LoadReport",
           "read_weights", "from_pretrained", "save_pretrained", "model_summary", "count_params", "count_macs"]
