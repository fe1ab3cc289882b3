"""GSPN layers: the mixer, norms, MLP and the block; attention, the control."""

from .attention import SelfAttention, sincos_position_2d
from .block import GSPNBlock
from .drop_path import DropPath
from .mixer import GSPNMixer, configure_mixers
from .mlp import Mlp
from .norms import GRN, LayerNorm2d

__all__ = ["GSPNBlock", "GSPNMixer", "DropPath", "Mlp", "GRN", "LayerNorm2d", "configure_mixers",
           "SelfAttention", "sincos_position_2d"]
