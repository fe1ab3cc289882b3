"""The GSPN propagation op: `propagate` and its backends; `mixer_propagate`, the mixer's fused four directions;
`stochastic_normalize`, the Stability-Context Condition on the weights."""

from .backends import available_backends
from .checks import DIRECTIONS
from .mixer import mixer_propagate
from .normalize import stochastic_normalize
from .propagate import propagate

__all__ = ["propagate", "mixer_propagate", "stochastic_normalize", "available_backends", "DIRECTIONS"]
