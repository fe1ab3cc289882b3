"""The CUDA kernels, run on the CPU by emulation, against the reference: forward and all five gradients.

csrc/cuda/propagate_kernels.cu (with its headers) is compiled as host C++ (g++, no nvcc, no CUDA torch)
over tests/ops/emulation/cuda_emulation.h: every GPU thread a fiber, run in a different order at each
launch of a kernel, every __syncthreads a checked
barrier, dynamic shared memory exactly the launch size and poisoned with NaN, every tensor an
exact-size buffer with NaN-poisoned outputs. The library is built once per test session.
"""

import pytest
import torch

from gspn.ops import DIRECTIONS, launch_plan, propagate
from tests.ops.emulation.harness import CXX, EmulationError, Emulator, build

NAMES = ["h", "dx", "dlam", "da", "db", "dc"]
ALL_CHUNKS = (None, 1, 2, 3, 64)  # 64 is longer than every scan below that uses it
# (B, C, G, H, W), chunks: G in {1, middle, C}; H or W = 1; odd non-square; more than 32 channels per
# group (several channel tiles, the workspace reduction); cross axes longer than a block of threads.
# Cross axes up to 64 run in warp mode (state in registers, shuffles), longer ones in block mode:
# (1, 3, 3, 70, 66) is block mode in every direction, several warps per line.
CASES = [
    ((2, 6, 1, 5, 7), ALL_CHUNKS),
    ((2, 6, 3, 5, 7), ALL_CHUNKS),
    ((2, 6, 6, 5, 7), ALL_CHUNKS),
    ((1, 4, 2, 1, 9), ALL_CHUNKS),
    ((1, 4, 2, 9, 1), ALL_CHUNKS),
    ((2, 3, 3, 13, 6), ALL_CHUNKS),
    ((1, 1, 1, 1, 1), (None, 1)),
    ((1, 70, 1, 6, 5), (None, 2)),
    ((2, 96, 2, 4, 3), (None, 3)),
    ((1, 2, 1, 600, 9), (None, 4)),
    ((1, 2, 2, 9, 600), (None, 4)),
    ((1, 3, 3, 70, 66), (None, 2, 5)),
]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler (g++) to build the emulated kernels")
    emu = Emulator(build(tmp_path_factory.mktemp("cuda_emulation")))
    yield emu
    emu.set_device()


@pytest.fixture
def emu(emulator):
    emulator.set_device()  # an H100's limits unless a test shrinks them
    yield emulator
    emulator.set_device()


def make_inputs(B, C, G, H, W, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, lam, dh = (torch.randn(B, C, H, W, generator=gen, dtype=torch.float64) for _ in range(3))
    a, b, c = (torch.rand(B, G, H, W, generator=gen, dtype=torch.float64) * 0.6 for _ in range(3))
    return [t.to(dtype) for t in (x, lam, a, b, c, dh)]


def reference(tensors, direction, chunk):
    """h and the gradients of <h, dh> through the reference backend and autograd."""
    inputs = [t.detach().clone().requires_grad_() for t in tensors[:5]]
    h = propagate(*inputs, direction=direction, chunk=chunk, backend="reference")
    return [h.detach(), *torch.autograd.grad(h, inputs, tensors[5])]


def emulated(emu, tensors, direction, chunk):
    h = emu.forward(*tensors[:5], direction, chunk)
    return [h, *emu.backward(tensors[5], *tensors[:5], h, direction, chunk)]


def assert_all_close(got, want, context, **tolerances):
    for name, g, w in zip(NAMES, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        torch.testing.assert_close(g, w, **tolerances, msg=lambda m: f"{name} ({context}): {m}")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape,chunks", CASES, ids=[str(c[0]) for c in CASES])
def test_float64_matches_reference(emu, shape, chunks, direction):
    tensors = make_inputs(*shape)
    for chunk in chunks:
        got = emulated(emu, tensors, direction, chunk)
        assert_all_close(got, reference(tensors, direction, chunk), f"chunk {chunk}")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [(2, 6, 1, 5, 7), (2, 3, 3, 13, 6), (1, 70, 2, 6, 5), (1, 2, 1, 600, 9),
                                   (1, 2, 2, 9, 600)], ids=str)
def test_float32_matches_float64_reference(emu, shape, direction):
    tensors = make_inputs(*shape)
    single = [t.float() for t in tensors]
    for chunk in (None, 3):
        got = emulated(emu, single, direction, chunk)
        assert all(g.dtype == torch.float32 for g in got)
        assert_all_close([g.double() for g in got], reference(tensors, direction, chunk), f"chunk {chunk}",
                         atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape,chunk", [((2, 4, 2, 1, 33), 4), ((1, 4, 2, 31, 40), None), ((2, 40, 1, 12, 13), 5),
                                         ((1, 3, 1, 70, 66), 3)], ids=str)
def test_low_precision_within_twice_the_reference_error(emu, shape, chunk, direction, dtype):
    tensors = make_inputs(*shape, dtype=dtype)
    exact = reference([t.double() for t in tensors], direction, chunk)
    ours, theirs = emulated(emu, tensors, direction, chunk), reference(tensors, direction, chunk)
    for name, o, t, e in zip(NAMES, ours, theirs, exact):
        assert o.dtype == dtype, name
        err_ours, err_theirs = (o.double() - e).abs().max().item(), (t.double() - e).abs().max().item()
        floor = 1e-6 * max(e.abs().max().item(), 1.0)
        assert err_ours <= 2 * err_theirs + floor, f"{name}: {err_ours:.3g} vs the reference's {err_theirs:.3g}"


# Shared memory shrunk until the planner falls back: fewer channels per block, shorter tiles, one channel.
FALLBACKS = [((1, 40, 1, 100, 6), 24 * 1024), ((1, 40, 2, 6, 100), 12 * 1024), ((2, 5, 1, 300, 4), 24 * 1024)]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape,optin", FALLBACKS, ids=str)
def test_shared_memory_fallback_plans(emu, shape, optin, direction):
    B, C, G, H, W = shape
    emu.set_device(shared_optin=optin)
    for backward in (False, True):
        plan = emu.plan(torch.float64, *shape, direction, 3, backward)
        roomy = launch_plan.make_plan(B, C, G, H, W, direction, 3, 8, backward, launch_plan.H100)
        assert plan is not None and plan["smem"] <= optin
        if roomy.smem > optin:
            assert (plan["kt"], plan["tile"]) != (roomy.kt, roomy.tile)
    tensors = make_inputs(*shape)
    assert_all_close(emulated(emu, tensors, direction, 3), reference(tensors, direction, 3), "fallback")


def test_repeated_runs_are_bitwise_identical(emu):
    tensors = make_inputs(2, 72, 2, 7, 9, dtype=torch.float32)  # several channel tiles per group
    first = emulated(emu, tensors, "tb", 4)
    for name, a, b in zip(NAMES, first, emulated(emu, tensors, "tb", 4)):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_forward_and_backward_accept_the_same_cross_axes(emu, dtype):
    """A model that runs inference must also train: the longest cross axis is the same both ways."""
    longest = {}
    for backward in (False, True):
        lo, hi = 1, 1 << 20
        while lo < hi:  # the longest cross axis (H for "lr") the planner accepts
            mid = (lo + hi + 1) // 2
            ok = emu.plan(dtype, 1, 4, 1, mid, 8, "lr", None, backward) is not None
            lo, hi = (mid, hi) if ok else (lo, mid - 1)
        longest[backward] = lo
    assert longest[False] == longest[True]
    assert longest[False] >= (3000 if dtype == torch.float64 else 6000)


def test_too_long_cross_axis_is_refused_cleanly(emu):
    limit = launch_plan.max_cross_length(torch.float32, launch_plan.H100)
    tensors = make_inputs(1, 1, 1, limit + 1, 2, dtype=torch.float32)
    with pytest.raises(EmulationError):
        emu.forward(*tensors[:5], "lr", None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("direction", ["lr", "tb"])
@pytest.mark.parametrize("shape", [(16, 8, 1024, 1024), (1, 32, 64, 64), (1, 32, 128, 128), (32, 196, 32, 32),
                                   (1, 768, 64, 64), (2, 5, 300, 7), (1, 1, 1, 1), (128, 576, 56, 56),
                                   (1, 128, 512, 512), (1, 3, 33, 17), (2, 40, 100, 129)], ids=str)
def test_python_plan_is_the_kernels_plan(emulator, shape, direction, dtype):
    """gspn.ops.launch_plan (the runtime planner that gspn.ops.cuda consults, whose plans
    `python -m gspn.benchmarks.propagate --plan` models) mirrors the C++ planner."""
    B, C, H, W = shape
    acc = 8 if dtype == torch.float64 else 4
    for G in sorted({1, C}):
        for backward in (False, True):
            got = emulator.plan(dtype, B, C, G, H, W, direction, None, backward)
            mine = launch_plan.make_plan(B, C, G, H, W, direction, None, acc, backward, launch_plan.H100,
                                         launch_plan.element_size(dtype))
            assert got == {k: getattr(mine, k) for k in got}, (G, backward)


@pytest.mark.parametrize("shape,direction", [((1, 2, 2, 9, 600), "lr"), ((1, 3, 3, 70, 66), "lr")], ids=str)
def test_sparse_grids_get_helper_rows(emulator, shape, direction):
    """Cases of CASES whose blocks have rows beyond their channels (grids of at most one block per SM):
    the threads that scan nothing but share the tile work are covered by the reference comparisons."""
    for backward in (False, True):
        plan = emulator.plan(torch.float64, *shape, direction, None, backward)
        assert plan["blocks"] <= 132 and plan["threads_y"] > plan["kt"], backward


# Split mode (forward_split_kernel, backward_split_kernel): float accumulation, cross axes of 33 to
# 128, one channel per block on a grid of at most one block per SM. Warp 0 scans while the other
# warps convert and drain the neighbouring tiles of 16 steps. Shapes in every direction: one tile, several,
# a short last tile (lr/rl W = 33, 17: the ownership of staging slots must not depend on the tile's
# length), the longest cross axis (128), chunks shorter than, across and longer than a tile, G = 1
# with several channels and G = C (workspace or direct weight gradients), B = 2.
SPLIT_CASES = [
    ((1, 1, 1, 70, 9), (None,)),
    ((1, 2, 1, 100, 20), (None, 3)),
    ((1, 1, 1, 64, 33), (None, 5, 64)),
    ((2, 3, 3, 66, 34), (None, 17)),
    ((1, 2, 1, 128, 40), (None, 2)),
    ((1, 1, 1, 37, 128), (None, 16)),
]


def split_mode(emu, dtype, shape, direction, chunk):
    """Whether forward and backward both run in split mode (they choose it under the same conditions)."""
    modes = {emu.plan(dtype, *shape, direction, chunk, backward)["split"] for backward in (False, True)}
    assert len(modes) == 1, "forward and backward disagree on split mode"
    return modes.pop()


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape,chunks", SPLIT_CASES, ids=[str(c[0]) for c in SPLIT_CASES])
def test_split_mode_float32_matches_float64_reference(emu, shape, chunks, direction):
    B, C, G, H, W = shape
    N = H if direction in ("lr", "rl") else W
    assert split_mode(emu, torch.float32, shape, direction, None) == (33 <= N <= 128)
    assert not split_mode(emu, torch.float64, shape, direction, None)  # float64 keeps the other plans
    tensors = make_inputs(*shape)
    single = [t.float() for t in tensors]
    for chunk in chunks:
        got = emulated(emu, single, direction, chunk)
        assert_all_close([g.double() for g in got], reference(tensors, direction, chunk), f"chunk {chunk}",
                         atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape,chunk", [((1, 1, 1, 64, 33), None), ((1, 2, 1, 100, 20), 3), ((2, 3, 3, 66, 34), None)],
                         ids=str)
def test_split_mode_low_precision_within_twice_the_reference_error(emu, shape, chunk, direction, dtype):
    """Odd W: 16-bit elements copied one at a time (synchronously); even W: in 4-byte pairs."""
    test_low_precision_within_twice_the_reference_error(emu, shape, chunk, direction, dtype)


def test_split_mode_is_bitwise_repeatable(emu):
    tensors = [t.float() for t in make_inputs(1, 3, 1, 70, 40)]  # three channel tiles: workspace reduction
    assert split_mode(emu, torch.float32, (1, 3, 1, 70, 40), "lr", None)
    first = emulated(emu, tensors, "lr", None)
    for name, a, b in zip(NAMES, first, emulated(emu, tensors, "lr", None)):
        assert torch.equal(a, b), name
