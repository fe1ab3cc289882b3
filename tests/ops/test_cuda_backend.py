"""The CUDA kernels against the reference, forward and all five gradients. Select with `pytest -m cuda`."""

import pytest
import torch

from gspn.ops import cuda as cuda_backend
from gspn.ops import DIRECTIONS, propagate

pytestmark = pytest.mark.cuda

NAMES = ["h", "dx", "dlam", "da", "db", "dc"]
# (B, C, G, H, W, chunk): H or W in {1, 2, 31, 33, 1000}, non-square, W % chunk != 0, G in {1, middle, C},
# more channels per group than one block takes (C // G > 32), a cross axis longer than a block (> 512).
SHAPES = [
    (1, 1, 1, 1, 1, None),
    (2, 4, 2, 1, 33, 4),
    (1, 3, 3, 31, 1, None),
    (2, 4, 1, 2, 31, 3),
    (1, 6, 3, 33, 2, 5),
    (1, 4, 2, 31, 1000, 64),
    (1, 2, 1, 1000, 33, 7),
    (2, 80, 1, 12, 13, None),
    (2, 96, 2, 9, 14, 4),
    (64, 32, 32, 7, 9, 2),
]


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    reason = cuda_backend.unavailable_reason(torch.device("cuda"))
    if reason is not None:  # a GPU is there, so a kernel that does not build is a failure, not a skip
        pytest.fail(f"the CUDA kernels are unavailable: {reason}")


def make_inputs(B, C, G, H, W, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, lam, dh = (torch.randn(B, C, H, W, generator=gen, dtype=torch.float64) for _ in range(3))
    a, b, c = (torch.rand(B, G, H, W, generator=gen, dtype=torch.float64) * 0.6 for _ in range(3))
    return [t.to("cuda", dtype) for t in (x, lam, a, b, c, dh)]


def run(backend, tensors, direction, chunk):
    """h and the gradients (dx, dlam, da, db, dc) of <h, dh>."""
    inputs = [t.detach().requires_grad_() for t in tensors[:5]]
    h = propagate(*inputs, direction=direction, chunk=chunk, backend=backend)
    return [h.detach(), *torch.autograd.grad(h, inputs, tensors[5])]


def max_error(got, want):
    return (got.double() - want.double()).abs().max().item()


def assert_close(got, want, tol):
    for name, g, w in zip(NAMES, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        scale = max(w.double().abs().max().item(), 1.0)
        assert max_error(g, w) <= tol * scale, f"{name}: error {max_error(g, w):.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape, direction, dtype, tol):
    *size, chunk = shape
    tensors = make_inputs(*size, dtype)
    assert_close(run("cuda", tensors, direction, chunk), run("reference", tensors, direction, chunk), tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[5], SHAPES[7]], ids=str)
def test_low_precision_within_twice_the_reference_error(shape, direction, dtype):
    *size, chunk = shape
    tensors = make_inputs(*size, dtype)
    exact = run("reference", [t.double() for t in tensors], direction, chunk)
    ours, theirs = run("cuda", tensors, direction, chunk), run("reference", tensors, direction, chunk)
    for name, o, t, e in zip(NAMES, ours, theirs, exact):
        assert o.dtype == dtype, name
        floor = 1e-6 * max(e.abs().max().item(), 1.0)
        assert max_error(o, e) <= 2 * max_error(t, e) + floor, f"{name}: {max_error(o, e):.3g} vs {max_error(t, e):.3g}"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_non_contiguous_inputs(direction):
    tensors = make_inputs(2, 4, 2, 9, 11, torch.float32)
    strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in tensors[:3]]
    strided += [t.contiguous(memory_format=torch.channels_last) for t in tensors[3:5]]
    strided.append(torch.stack([tensors[5], tensors[5]], dim=-1)[..., 0])
    assert not any(t.is_contiguous() for t in strided)
    assert_close(run("cuda", strided, direction, 4), run("cuda", tensors, direction, 4), 1e-6)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("C,G,H,W,chunk", [(4, 2, 3, 5, 2), (2, 1, 4, 3, None), (3, 3, 1, 4, 3)])
def test_gradcheck(direction, C, G, H, W, chunk):
    inputs = [t.requires_grad_() for t in make_inputs(1, C, G, H, W, torch.float64)[:5]]
    assert torch.autograd.gradcheck(lambda *t: propagate(*t, direction=direction, chunk=chunk, backend="cuda"), inputs)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_repeated_runs_are_bitwise_identical(direction):
    tensors = make_inputs(2, 72, 2, 40, 600, torch.float32)  # several channel tiles per group, long cross axes
    first = run("cuda", tensors, direction, 16)
    for _ in range(3):
        for name, a, b in zip(NAMES, first, run("cuda", tensors, direction, 16)):
            assert torch.equal(a, b), name


def test_side_stream_and_other_device():
    tensors = make_inputs(2, 4, 2, 17, 23, torch.float32)
    want = run("cuda", tensors, "bt", 5)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = run("cuda", tensors, "bt", 5)
    stream.synchronize()
    assert_close(got, want, 0.0)
    if torch.cuda.device_count() > 1:  # the device guard: tensors on cuda:1 while cuda:0 is current
        got = run("cuda", [t.to("cuda:1") for t in tensors], "bt", 5)
        assert all(t.device == torch.device("cuda:1") for t in got)
        assert_close([t.to("cuda:0") for t in got], want, 0.0)


def test_opcheck():
    x, lam, a, b, c, dh = make_inputs(2, 4, 2, 3, 5, torch.float32)
    torch.library.opcheck(torch.ops.gspn_cuda.forward.default, (x, lam, a, b, c, "rl", 2))
    h = torch.ops.gspn_cuda.forward(x, lam, a, b, c, "rl", 2)
    torch.library.opcheck(torch.ops.gspn_cuda.backward.default, (dh, x, lam, a, b, c, h, "rl", 2))
    torch.library.opcheck(torch.ops.gspn.propagate.default, (x, lam, a, b, c, "tb", 2, "cuda"))


def test_bad_inputs_are_refused_by_the_binding():
    x, lam, a, b, c, _ = make_inputs(1, 4, 2, 3, 5, torch.float32)
    with pytest.raises(RuntimeError, match="`lam` must be contiguous"):
        torch.ops.gspn_cuda.forward(x, lam.transpose(2, 3).contiguous().transpose(2, 3), a, b, c, "lr", 0)
    with pytest.raises(RuntimeError, match="`a` is Double but `x` is Float"):
        torch.ops.gspn_cuda.forward(x, lam, a.double(), b, c, "lr", 0)
    with pytest.raises(RuntimeError, match="direction must be one of"):
        torch.ops.gspn_cuda.forward(x, lam, a, b, c, "up", 0)
