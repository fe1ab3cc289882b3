"""The GSPN propagation op: `propagate` and its backends; `mixer_propagate`, the mixer's fused four directions."""

from .backends import available_backends
from .mixer import mixer_propagate
from .propagate import propagate

__all__ = ["propagate", "mixer_propagate", "available_backends"]
