"""`mixer_propagate`: the GSPN mixer's whole propagation, four directions in one op (docs/mixer.md).

Registered as the torch custom op `gspn::mixer_propagate` (fake implementation for torch.compile)
with its own backward `gspn::mixer_propagate_backward`. The backend is resolved at run time like
`propagate`'s: a backend module with `mixer_forward`/`mixer_backward` runs its fused kernel (on CPU,
csrc/cpu/mixer_cpu.cpp); any other (the reference, CUDA until its fused kernel exists) runs the
composition of its single-direction scans (gspn/ops/mixer_reference.py), which with the "reference"
backend is the definition. The backward recomputes the normalised weights from the logits and,
unless `save_states`, the hidden states too, and returns gradients in the layout of the inputs.
"""

import torch
from torch import Tensor

from . import mixer_reference
from .backends import resolve
from .checks import BACKEND_NAMES, DIRECTIONS
from .precision import compute_dtype


def _implementation(backend: str, device: torch.device):
    """(forward, backward) for the resolved backend: its fused kernel where the backend module has one
    (`mixer_forward` and `mixer_backward`, as gspn.ops.cpu does), else the composition of its scans."""
    module = resolve(backend, device)
    if hasattr(module, "mixer_forward") and hasattr(module, "mixer_backward"):
        return module.mixer_forward, module.mixer_backward
    return ((lambda *args: mixer_reference.forward(module, *args)),
            (lambda *args: mixer_reference.backward(module, *args)))


def _states_shape(x: Tensor, save_states: bool) -> tuple[int, ...]:
    B, C, H, W = x.shape
    return (B, len(DIRECTIONS), C, H, W) if save_states else (0,)


@torch.library.custom_op("gspn::mixer_propagate", mutates_args=())
def _mixer_propagate(x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None, groups: int, chunk: int,
                     skip: bool, save_states: bool, backend: str) -> tuple[Tensor, Tensor]:
    forward, _ = _implementation(backend, x.device)
    if x.numel() == 0:  # an empty batch, channel or axis: nothing to scan
        return x.new_empty(x.shape), x.new_empty(_states_shape(x, save_states),
                                                 dtype=compute_dtype(x.dtype))
    return forward(x, params, merge, proj, groups, chunk, skip, save_states)


@_mixer_propagate.register_fake
def _(x, params, merge, proj, groups, chunk, skip, save_states, backend):
    return x.new_empty(x.shape), x.new_empty(_states_shape(x, save_states),
                                             dtype=compute_dtype(x.dtype))


@torch.library.custom_op("gspn::mixer_propagate_backward", mutates_args=())
def _mixer_propagate_backward(gy: Tensor, x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None,
                              states: Tensor, groups: int, chunk: int, skip: bool,
                              backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _, backward = _implementation(backend, x.device)
    if x.numel() == 0:
        dproj = proj.new_zeros(proj.shape) if proj is not None else params.new_empty(0)
        return x.new_empty(x.shape), params.new_zeros(params.shape), merge.new_zeros(merge.shape), dproj
    return backward(gy, x, params, merge, proj, states, groups, chunk, skip)


@_mixer_propagate_backward.register_fake
def _(gy, x, params, merge, proj, states, groups, chunk, skip, backend):
    dproj = proj.new_empty(proj.shape) if proj is not None else params.new_empty(0)
    return x.new_empty(x.shape), params.new_empty(params.shape), merge.new_empty(merge.shape), dproj


def _setup_context(ctx, inputs, output):
    x, params, merge, proj, groups, chunk, skip, save_states, backend = inputs
    _, states = output
    ctx.mark_non_differentiable(states)
    ctx.save_for_backward(x, params, merge, proj, states)
    ctx.config = (groups, chunk, skip, backend)


def _backward(ctx, gy, _gstates):
    x, params, merge, proj, states = ctx.saved_tensors
    groups, chunk, skip, backend = ctx.config
    dx, dparams, dmerge, dproj = _mixer_propagate_backward(gy.contiguous(), x, params, merge, proj, states,
                                                          groups, chunk, skip, backend)
    return dx, dparams, dmerge, (dproj if proj is not None else None), None, None, None, None, None


_mixer_propagate.register_autograd(_backward, setup_context=_setup_context)


def _check(x, params, merge, proj, groups, chunk, skip, backend) -> None:
    for name, t in (("x", x), ("params", params), ("merge", merge)) + ((("proj", proj),) if proj is not None else ()):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"mixer_propagate: `{name}` must be a floating-point torch.Tensor")
        if t.device != x.device:
            raise TypeError(f"mixer_propagate: `{name}` is on {t.device} but `x` is on {x.device}")
    if x.dim() != 4 or params.dim() != 4:
        raise ValueError(f"mixer_propagate: `x` and `params` must have 4 dims, got {tuple(x.shape)} and "
                         f"{tuple(params.shape)}")
    B, C, H, W = x.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or C % groups != 0:
        raise ValueError(f"mixer_propagate: `groups` must be an int >= 1 dividing C = {C}, got {groups!r}")
    Q = mixer_reference.channels_per_direction(C, groups, skip)
    rows = len(DIRECTIONS) * Q
    if proj is None:
        if params.shape != (B, rows, H, W):
            raise ValueError(f"mixer_propagate: `params` must be (B, 4 * Q, H, W) = ({B}, {rows}, {H}, {W}) with "
                             f"Q = 3 * groups + {3 if skip else 2} * C, got {tuple(params.shape)}")
    else:
        if proj.dim() != 2 or proj.shape[0] != rows:
            raise ValueError(f"mixer_propagate: `proj` must be (4 * Q, R) = ({rows}, R), got {tuple(proj.shape)}")
        if params.shape != (B, proj.shape[1], H, W):
            raise ValueError(f"mixer_propagate: with `proj`, `params` is the proxy (B, R, H, W) = "
                             f"({B}, {proj.shape[1]}, {H}, {W}), got {tuple(params.shape)}")
    if merge.shape != (len(DIRECTIONS),):
        raise ValueError(f"mixer_propagate: `merge` must have shape (4,), got {tuple(merge.shape)}")
    if params.dtype != x.dtype:
        raise TypeError(f"mixer_propagate: `params` is {params.dtype} but `x` is {x.dtype}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"mixer_propagate: `chunk` must be None (global) or an int >= 1, got {chunk!r}")
    if backend is not None and backend not in BACKEND_NAMES:
        raise ValueError(f"mixer_propagate: `backend` must be None or one of {BACKEND_NAMES}, got {backend!r}")


def mixer_propagate(x: Tensor, params: Tensor, merge: Tensor, *, groups: int, proj: Tensor | None = None,
                    chunk: int | None = None, skip: bool = True, save_states: bool = False,
                    backend: str | None = None) -> Tensor:
    """y = sum_k merge[k] * (u_k * h_k + d_k * x) over the four directions, in one op.

    x: (B, C, H, W). params: (B, 4 * Q, H, W), per direction (DIRECTIONS order) the weight logits
    a~, b~, c~ (G = `groups` channels each), lam and u (C each) and, with `skip`, d (C); Q is the sum.
    With `proj` (4 * Q, R), params is instead a proxy (B, R, H, W) and the per-direction maps are
    proj @ params at each pixel, computed inside and never stored. merge: (4,). The logits are
    normalised inside (docs/design.md §1.2) along each direction's cross axis. `save_states` keeps the hidden
    states for the backward (4 * B * C * H * W values) instead of recomputing them there.
    Low-precision inputs run in float32; y has x's dtype.
    """
    _check(x, params, merge, proj, groups, chunk, skip, backend)
    y, _ = _mixer_propagate(x.contiguous(), params.contiguous(), merge.contiguous(),
                            proj.contiguous() if proj is not None else None, groups, chunk or 0, skip, save_states,
                            backend or "")
    return y
