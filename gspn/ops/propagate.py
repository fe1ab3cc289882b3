"""The public entry point `propagate`, registered as the torch custom op `gspn::propagate`.

The op is opaque to torch.compile (a fake implementation gives its output's metadata) and carries
its own backward, the op `gspn::propagate_backward`. The backend is chosen inside the op at run time,
so a compiled graph does not bake in a choice and tracing never builds kernels.
"""

import torch
from torch import Tensor

from .backends import resolve
from .checks import check_inputs


@torch.library.custom_op("gspn::propagate", mutates_args=())
def _propagate(x: Tensor, lam: Tensor, a: Tensor, b: Tensor, c: Tensor,
               direction: str, chunk: int, backend: str) -> Tensor:
    module = resolve(backend, x.device)
    if x.numel() == 0:  # an empty batch, channel or axis: no backend is asked to scan nothing
        return x.new_empty(x.shape)
    return module.forward(x, lam, a, b, c, direction, chunk)


@_propagate.register_fake
def _(x, lam, a, b, c, direction, chunk, backend):
    return x.new_empty(x.shape)


@torch.library.custom_op("gspn::propagate_backward", mutates_args=())
def _propagate_backward(dh: Tensor, x: Tensor, lam: Tensor, a: Tensor, b: Tensor, c: Tensor, h: Tensor,
                        direction: str, chunk: int, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    module = resolve(backend, x.device)
    if x.numel() == 0:  # with C == 0 the weights are not empty, and their gradient is zero
        return x.new_empty(x.shape), x.new_empty(x.shape), a.new_zeros(a.shape), b.new_zeros(b.shape), c.new_zeros(c.shape)
    return module.backward(dh, x, lam, a, b, c, h, direction, chunk)


@_propagate_backward.register_fake
def _(dh, x, lam, a, b, c, h, direction, chunk, backend):
    return tuple(t.new_empty(t.shape) for t in (x, lam, a, b, c))


def _setup_context(ctx, inputs, output):
    x, lam, a, b, c, direction, chunk, backend = inputs
    ctx.save_for_backward(x, lam, a, b, c, output)
    ctx.config = (direction, chunk, backend)


def _backward(ctx, dh):
    grads = _propagate_backward(dh.contiguous(), *ctx.saved_tensors, *ctx.config)
    return (*grads, None, None, None)


_propagate.register_autograd(_backward, setup_context=_setup_context)


def propagate(x: Tensor, lam: Tensor, a: Tensor, b: Tensor, c: Tensor, *,
              direction: str = "lr", chunk: int | None = None, backend: str | None = None) -> Tensor:
    """Run the GSPN line scan (docs/design.md §1.1) in one direction and return the hidden state h.

    x, lam: (B, C, H, W). a, b, c: (B, G, H, W) with G dividing C; channel group g (C // G contiguous
    channels) uses weight plane g. `direction` in {"lr", "rl", "tb", "bt"}: "a" always links to the
    lower-index neighbour on the cross axis, "c" to the higher one, and h is in x's frame.
    `chunk`: None for one global scan, or k >= 1 to restart the state every k steps counted from
    where the scan starts. `backend`: None (fastest available, or $GSPN_BACKEND), "reference",
    "cpu" or "cuda". Weights are used as given; normalising them is the layer's job.
    """
    check_inputs(x, lam, a, b, c, direction, chunk, backend)
    args = (t.contiguous() for t in (x, lam, a, b, c))
    return _propagate(*args, direction, chunk or 0, backend or "")
