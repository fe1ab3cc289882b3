"""Validation of `propagate`'s arguments: every error is raised here, before any kernel runs."""

import torch

DIRECTIONS = ("lr", "rl", "tb", "bt")
BACKEND_NAMES = ("reference", "cpu", "cuda")


def _describe(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {t.dtype} on {t.device}"


def check_inputs(x, lam, a, b, c, direction, chunk, backend) -> None:
    tensors = {"x": x, "lam": lam, "a": a, "b": b, "c": c}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"propagate: `{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"propagate: `{name}` must have 4 dims (B, C, H, W) or (B, G, H, W), "
                             f"got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"propagate: `{name}` must be floating point, got {t.dtype}")
    for name, t in tensors.items():
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"propagate: `{name}` is {_describe(t)} but `x` is {_describe(x)}; "
                            "all inputs must share dtype and device")
    if lam.shape != x.shape:
        raise ValueError(f"propagate: `lam` must have x's shape {tuple(x.shape)}, got {tuple(lam.shape)}")
    B, C, H, W = x.shape
    if a.shape[1] < 1 or C % a.shape[1] != 0:
        raise ValueError(f"propagate: `a` must have shape (B, G, H, W) = ({B}, G, {H}, {W}) with G dividing "
                         f"C = {C}, got {tuple(a.shape)}")
    G = a.shape[1]
    for name in ("a", "b", "c"):
        if tensors[name].shape != (B, G, H, W):
            raise ValueError(f"propagate: `{name}` must have shape (B, G, H, W) = ({B}, {G}, {H}, {W}) "
                             f"with G dividing C = {C}, got {tuple(tensors[name].shape)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"propagate: `direction` must be one of {DIRECTIONS}, got {direction!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"propagate: `chunk` must be None (global) or an int >= 1, got {chunk!r}")
    if backend is not None and backend not in BACKEND_NAMES:
        raise ValueError(f"propagate: `backend` must be None or one of {BACKEND_NAMES}, got {backend!r}")
