"""Shapes the CUDA kernels cannot take run on the reference with one warning (no GPU needed)."""

import warnings

import torch

from gspn.ops import cuda, launch_plan
from tests.ops.test_cuda_emulation import make_inputs


def test_kernels_take_the_same_cross_axes_both_ways():
    limit = launch_plan.max_cross_length(torch.float32)
    ok = torch.empty(1, 1, limit, 2)
    too_long = torch.empty(1, 1, limit + 1, 2)
    assert cuda.kernels_take(ok, ok, "lr", launch_plan.H100)
    assert not cuda.kernels_take(too_long, too_long, "lr", launch_plan.H100)
    assert cuda.kernels_take(too_long, too_long, "tb", launch_plan.H100)  # W = 2 is the cross axis there


def test_refused_shape_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(cuda, "kernels_take", lambda *args, **kwargs: False)
    monkeypatch.setattr(cuda, "_warned", False)
    x, lam, a, b, c, dh = make_inputs(1, 2, 1, 5, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = cuda.forward(x, lam, a, b, c, "lr", 0)
        grads = cuda.backward(dh, x, lam, a, b, c, h, "lr", 0)
        cuda.forward(x, lam, a, b, c, "tb", 0)
    assert len([w for w in caught if "cannot take shape" in str(w.message)]) == 1
    from gspn.ops import reference_backend
    torch.testing.assert_close(h, reference_backend.forward(x, lam, a, b, c, "lr", 0))
    assert len(grads) == 5
