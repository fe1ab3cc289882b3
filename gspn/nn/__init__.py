"""GSPN layers: the mixer, its normalisation of weights, norms, MLP and the block; attention, the control."""

from .attention import SelfAttention, sincos_position_2d
from .block import GSPNBlock
from .drop_path import DropPath
from .mixer import DIRECTIONS, GSPNMixer, scan_directions, use_fused_mixers
from .mlp import Mlp
from .normalize import stochastic_normalize
from .norms import GRN, LayerNorm2d

__all__ = ["GSPNBlock", "GSPNMixer", "DropPath", "Mlp", "GRN", "LayerNorm2d",
           "stochastic_normalize", "scan_directions", "use_fused_mixers", "DIRECTIONS",
           "SelfAttention", "sincos_position_2d"]
