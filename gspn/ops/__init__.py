"""The GSPN propagation op: `propagate` and its backends."""

from .backends import available_backends
from .propagate import propagate

__all__ = ["propagate", "available_backends"]
