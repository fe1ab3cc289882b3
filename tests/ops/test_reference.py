"""The reference implementation against the dense-matrix oracle, forward and all five gradients."""

import pytest
import torch

from gspn.ops import DIRECTIONS, propagate
from tests.oracle import dense_propagate


def make_inputs(B, C, G, H, W, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=gen, dtype=dtype)
    lam = torch.randn(B, C, H, W, generator=gen, dtype=dtype)
    a, b, c = (torch.rand(B, G, H, W, generator=gen, dtype=dtype) * 0.6 for _ in range(3))
    return [t.requires_grad_() for t in (x, lam, a, b, c)]


def grads(fn, inputs, seed=1):
    out = fn(*inputs)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return (out,) + torch.autograd.grad((out * weight).sum(), inputs, materialize_grads=True)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("chunk", [None, 1, 2, 3])
@pytest.mark.parametrize("C,G", [(4, 1), (4, 2), (4, 4)])
def test_reference_matches_dense_oracle(direction, chunk, C, G):
    inputs = make_inputs(2, C, G, 4, 5)
    ours = grads(lambda *t: propagate(*t, direction=direction, chunk=chunk, backend="reference"), inputs)
    oracle = grads(lambda *t: dense_propagate(*t, direction=direction, chunk=chunk), inputs)
    for name, got, want in zip(["h", "dx", "dlam", "da", "db", "dc"], ours, oracle):
        torch.testing.assert_close(got, want, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (3, 7), (6, 2)])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_reference_awkward_sizes(shape, direction):
    inputs = make_inputs(1, 2, 1, *shape)
    for chunk in (None, 4):
        ours = grads(lambda *t: propagate(*t, direction=direction, chunk=chunk, backend="reference"), inputs)
        oracle = grads(lambda *t: dense_propagate(*t, direction=direction, chunk=chunk), inputs)
        for got, want in zip(ours, oracle):
            torch.testing.assert_close(got, want)


def test_reference_gradcheck():
    inputs = make_inputs(1, 4, 2, 3, 4)
    for direction in DIRECTIONS:
        assert torch.autograd.gradcheck(
            lambda *t: propagate(*t, direction=direction, chunk=3, backend="reference"), inputs)


def test_direction_is_the_transformed_lr_scan():
    """A single impulse spreads only downstream of the scan, inside a cone widening by one per step."""
    x = torch.zeros(1, 1, 7, 9, dtype=torch.float64)
    x[0, 0, 3, 4] = 1.0
    lam = torch.ones_like(x)
    w = torch.full_like(x, 1 / 3)
    reach = {d: propagate(x, lam, w, w, w, direction=d, backend="reference") != 0 for d in DIRECTIONS}
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    dr, dc = rows - 3, cols - 4
    expected = {"lr": (dc >= 0) & (dr.abs() <= dc), "rl": (dc <= 0) & (dr.abs() <= -dc),
                "tb": (dr >= 0) & (dc.abs() <= dr), "bt": (dr <= 0) & (dc.abs() <= -dr)}
    for d in DIRECTIONS:
        assert torch.equal(reach[d][0, 0], expected[d]), d
