"""The C++ cpu backend against the reference backend: forward and all five gradients.

The extension must build here: a build failure makes these tests fail (backend="cpu" raises), not skip.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gspn.ops import DIRECTIONS, cpu, propagate
from tests.ops.test_reference import make_inputs

CHUNKS = [None, 1, 3, 8]  # 8 exceeds most widths below; 3 rarely divides them


def run(inputs, backend, **kwargs):
    """h and the gradients of a fixed random weighting of h (the same weights in every dtype)."""
    h = propagate(*inputs, backend=backend, **kwargs)
    weight = torch.randn(h.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (h,) + torch.autograd.grad((h * weight.to(h.dtype)).sum(), inputs, materialize_grads=True)


def assert_matches_reference(inputs, atol=None, rtol=None, **kwargs):
    want = run(inputs, "reference", **kwargs)
    got = run(inputs, "cpu", **kwargs)
    for name, g, w in zip(["h", "dx", "dlam", "da", "db", "dc"], got, want):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"{name} ({kwargs}): {m}")


def test_extension_builds():
    assert cpu.unavailable_reason(torch.device("cpu")) is None


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("C,G", [(6, 1), (6, 3), (6, 6)])
@pytest.mark.parametrize("H,W", [(1, 1), (1, 6), (5, 1), (5, 7), (4, 20), (17, 9)])
def test_matches_reference(direction, C, G, H, W):
    inputs = make_inputs(2, C, G, H, W)
    for chunk in CHUNKS:
        assert_matches_reference(inputs, direction=direction, chunk=chunk)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck(direction):
    for C, G in [(4, 2), (3, 1)]:
        inputs = make_inputs(1, C, G, 3, 5)
        assert torch.autograd.gradcheck(lambda *t: propagate(*t, direction=direction, chunk=2, backend="cpu"), inputs)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("G", [1, 4])
def test_float32_blocks(direction, G):
    """Sizes that take the vectorised paths, full and partial blocks, against the float64 reference."""
    inputs64 = make_inputs(2, 4, G, 37, 45)
    inputs32 = [t.detach().float().requires_grad_() for t in inputs64]
    inputs64 = [t.detach().double().requires_grad_() for t in inputs32]
    for chunk in (None, 6):
        want = run(inputs64, "reference", direction=direction, chunk=chunk)
        got = run(inputs32, "cpu", direction=direction, chunk=chunk)
        for g, w in zip(got, want):
            assert g.dtype == torch.float32
            torch.testing.assert_close(g.double(), w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs_in_float32(dtype):
    inputs64 = make_inputs(1, 4, 2, 9, 11)
    inputs = [t.detach().to(dtype).requires_grad_() for t in inputs64]
    exact = run([t.detach().double().requires_grad_() for t in inputs], "reference", direction="bt", chunk=4)
    got = run(inputs, "cpu", direction="bt", chunk=4)
    for g, w in zip(got, exact):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), w, atol=2e-2, rtol=2e-2)


def test_non_contiguous_inputs():
    x, lam, a, b, c = (t.detach() for t in make_inputs(2, 4, 2, 7, 5))
    views = [x.transpose(2, 3).contiguous().transpose(2, 3), torch.stack([lam, lam], dim=-1)[..., 1],
             a.transpose(2, 3).contiguous().transpose(2, 3), b[:, :, :, :], c[:, :, :1].expand(2, 2, 7, 5)]
    assert not any(t.is_contiguous() for t in views[:3] + views[4:])
    for direction in DIRECTIONS:
        torch.testing.assert_close(propagate(*views, direction=direction, backend="cpu"),
                                   propagate(*(t.contiguous() for t in views), direction=direction,
                                             backend="reference"))


@pytest.mark.parametrize("threads", [2, 3])
def test_groups_split_over_threads(threads):
    """With fewer (batch, group) pairs than threads a group's channels are split and their weight
    gradients summed afterwards (5 channels over 3 threads: shares of 1, 2 and 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for direction in ("lr", "tb"):
            assert_matches_reference(make_inputs(1, 5, 1, 6, 7), direction=direction, chunk=4)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(os.environ.get("GSPN_CPU_ISA") == "baseline", reason="already the baseline build")
def test_portable_build_of_the_kernels():
    """The baseline-instruction-set kernels (used where the CPU lacks AVX2) in a fresh process."""
    env = dict(os.environ, GSPN_CPU_ISA="baseline")
    selection = "test_matches_reference or test_float32_blocks or test_groups_split_over_threads"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                             "-k", selection], env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
