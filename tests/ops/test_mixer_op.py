"""The fused mixer op `mixer_propagate`: its reference against the dense oracle, the C++ kernel against
the reference, gradients, dispatch, the custom-op contract and empty inputs."""

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gspn.benchmarks.propagate import FROM_LR, TO_LR
from gspn.ops import DIRECTIONS, backends, cpu, mixer_propagate, mixer_reference
from gspn.ops import flops as _flops  # noqa: F401  (registers the op's formula)
from tests.oracle import dense_propagate
from tests.ops.test_propagate_api import require

NAMES = ["y", "dx", "dparams", "dmerge", "dproj"]


def make(B, C, G, H, W, *, skip=True, rank=None, dtype=torch.float64, seed=0):
    """(x, params, merge, proj) with grads; params is the proxy (B, rank, H, W) when rank is given."""
    gen = torch.Generator().manual_seed(seed)
    Q = mixer_reference.channels_per_direction(C, G, skip)
    x = torch.randn(B, C, H, W, generator=gen, dtype=dtype)
    merge = torch.randn(4, generator=gen, dtype=dtype)
    if rank is None:
        params, proj = torch.randn(B, 4 * Q, H, W, generator=gen, dtype=dtype) * 1.5, None
    else:
        params = torch.randn(B, rank, H, W, generator=gen, dtype=dtype)
        proj = torch.randn(4 * Q, rank, generator=gen, dtype=dtype) * 0.7
    return [t.requires_grad_() if t is not None else None for t in (x, params, merge, proj)]


def run(inputs, G, backend, **kwargs):
    """y and the gradients of a fixed random weighting of y (dproj None without proj)."""
    x, params, merge, proj = inputs
    y = mixer_propagate(x, params, merge, groups=G, proj=proj, backend=backend, **kwargs)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y.dtype)
    wrt = [t for t in inputs if t is not None]
    grads = list(torch.autograd.grad((y * weight).sum(), wrt))
    return [y] + grads + ([None] if proj is None else [])


def assert_all_close(got, want, **tol):
    for name, g, w in zip(NAMES, got, want):
        if w is None:
            assert g is None
            continue
        torch.testing.assert_close(g, w, msg=lambda m: f"{name}: {m}", **tol)


def oracle(x, params, merge, proj, G, chunk, skip):
    """The definition with independent pieces: the normalisation written out (in each direction's
    left-to-right frame, where the rows are the cross axis), the dense-matrix scan."""
    B, C, H, W = x.shape
    full = params if proj is None else torch.einsum("qr,brhw->bqhw", proj, params)
    per = full.view(B, 4, -1, H, W)
    y = 0
    for k, direction in enumerate(DIRECTIONS):
        p = per[:, k]
        s = [TO_LR[direction](torch.sigmoid(p[:, i * G:(i + 1) * G])) for i in range(3)]
        n = s[0].shape[2]
        index = torch.arange(n).view(n, 1)
        s[0] = s[0] * (index > 0)
        s[2] = s[2] * (index < n - 1)
        total = s[0] + s[1] + s[2]
        a, b, c = (FROM_LR[direction](t / total) for t in s)
        lam, u = p[:, 3 * G:3 * G + C], p[:, 3 * G + C:3 * G + 2 * C]
        h = dense_propagate(x, lam, a, b, c, direction=direction, chunk=chunk)
        term = u * h + (p[:, 3 * G + 2 * C:] * x if skip else 0)
        y = y + merge[k] * term
    return y


@pytest.mark.parametrize("C,G,skip,rank", [(2, 2, True, None), (3, 1, False, None), (2, 2, True, 3), (4, 2, False, 2)])
@pytest.mark.parametrize("chunk", [None, 2])
def test_reference_matches_dense_oracle(C, G, skip, rank, chunk):
    inputs = make(1, C, G, 3, 4, skip=skip, rank=rank)
    x, params, merge, proj = inputs
    got = run(inputs, G, "reference", chunk=chunk, skip=skip)
    y = oracle(x, params, merge, proj, G, chunk, skip)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = [y] + list(torch.autograd.grad((y * weight).sum(), [t for t in inputs if t is not None]))
    want += [None] if proj is None else []
    assert_all_close(got, want)


H, W = 5, 8  # non-square on purpose: the official transposed-copy merge cannot run it


def per_direction(x, params, G, chunk=None):
    """u_k * h_k of each direction k from the reference backend, (B, 4, C, H, W): a one-hot merge picks
    one direction, no skip. params: (B, 4, Q, H, W), per direction a~, b~, c~ (G each), lam, u (C each)."""
    return torch.stack([mixer_propagate(x, params.flatten(1, 2), merge, groups=G, chunk=chunk, skip=False,
                                        backend="reference") for merge in torch.eye(4, dtype=x.dtype)], 1)


def _cone(direction, i0, j0):
    i = torch.arange(H).view(H, 1)
    j = torch.arange(W).view(1, W)
    along, across = {"lr": (j - j0, i - i0), "rl": (j0 - j, i - i0),
                     "tb": (i - i0, j - j0), "bt": (i0 - i, j - j0)}[direction]
    return (along >= 0) & (across.abs() <= along)


@pytest.mark.parametrize("i0,j0", [(2, 3), (0, 0), (4, 7), (1, 6)])
def test_an_impulse_spreads_only_into_each_directions_cone(i0, j0):
    """lam = u = 1 and zero logits (every weight 1/3, 1/2 at the borders) for all four directions."""
    x = torch.zeros(1, 1, H, W)
    x[0, 0, i0, j0] = 1.0
    params = torch.cat([torch.zeros(1, 4, 3, H, W), torch.ones(1, 4, 2, H, W)], 2)
    y = per_direction(x, params, 1)
    for k, direction in enumerate(DIRECTIONS):
        reached = y[0, k, 0] != 0
        assert torch.equal(reached, _cone(direction, i0, j0)), f"{direction}:\n{reached.int()}"


@pytest.mark.parametrize("groups", [3, 1])
@pytest.mark.parametrize("forward,backward,dim", [("lr", "rl", -1), ("tb", "bt", -2)])
def test_flipping_along_the_scan_swaps_opposite_directions(groups, forward, backward, dim):
    """Flipping the scan axis turns a scan into its opposite; the cross axis (and a, c) stay put."""
    x = torch.randn(2, 3, H, W)
    params = torch.randn(2, 4, mixer_reference.channels_per_direction(3, groups, False), H, W)
    f, b = DIRECTIONS.index(forward), DIRECTIONS.index(backward)
    y = per_direction(x, params, groups, chunk=3)
    swapped = params.flip(dim)[:, [b if d == f else f if d == b else d for d in range(4)]]
    y_flipped = per_direction(x.flip(dim), swapped, groups, chunk=3)
    torch.testing.assert_close(y_flipped[:, f].flip(dim), y[:, b])
    torch.testing.assert_close(y_flipped[:, b].flip(dim), y[:, f])


def test_transposing_the_input_maps_horizontal_scans_to_vertical_ones():
    x = torch.randn(1, 2, H, W)
    params = torch.randn(1, 4, mixer_reference.channels_per_direction(2, 2, False), H, W)
    y = per_direction(x, params, 2)
    swap = [DIRECTIONS.index(d) for d in ("tb", "bt", "lr", "rl")]
    yt = per_direction(x.transpose(-1, -2), params.transpose(-1, -2)[:, swap], 2)
    torch.testing.assert_close(yt[:, swap].transpose(-1, -2), y)


# (B, C, G, H, W): per-channel and shared weights, lines of one, non-square, more than a pixel tile
# (512) in one plane, one (batch, group) pair for two threads (its channels split in parts)
CPU_SHAPES = [(2, 3, 3, 5, 7), (1, 4, 1, 6, 5), (2, 4, 2, 1, 6), (1, 2, 2, 7, 1), (1, 2, 1, 23, 29), (1, 5, 1, 4, 4)]


@pytest.mark.parametrize("B,C,G,H,W", CPU_SHAPES)
@pytest.mark.parametrize("skip,rank", [(True, None), (False, None), (True, 3)])
def test_cpu_kernel_matches_reference(B, C, G, H, W, skip, rank):
    require("cpu")
    inputs = make(B, C, G, H, W, skip=skip, rank=rank)
    for chunk, save in itertools.product((None, 3), (False, True)):
        kwargs = dict(chunk=chunk, skip=skip, save_states=save)
        assert_all_close(run(inputs, G, "cpu", **kwargs), run(inputs, G, "reference", **kwargs))


@pytest.mark.parametrize("threads", [1, 3])
def test_cpu_kernel_splits_groups_over_threads(threads):
    """Fewer (batch, group) pairs than threads: a group's channels are split in parts whose logit
    gradients (and, with proj, dz and dproj per thread) are summed afterwards."""
    require("cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for rank in (None, 2):
            inputs = make(1, 5, 1, 6, 7, rank=rank)
            assert_all_close(run(inputs, 1, "cpu", chunk=4), run(inputs, 1, "reference", chunk=4))
    finally:
        torch.set_num_threads(before)


# float32 runs the vectorised kernels: planes and pixel tiles with and without partial vectors and
# 8 x 8 transpose blocks (an overlapping last one at 14 and 19), ranks in blocks of 8, 4, 2 and 1
@pytest.mark.parametrize("B,C,G,H,W,rank,skip", [(2, 6, 6, 19, 30, 4, True), (1, 3, 3, 14, 14, 8, True),
                                                 (2, 2, 2, 8, 16, 11, True), (1, 4, 2, 7, 9, 3, False),
                                                 (1, 2, 2, 24, 40, 16, True), (1, 3, 1, 14, 14, None, True)])
def test_cpu_kernel_in_float32_against_float64_reference(B, C, G, H, W, rank, skip):
    require("cpu")
    inputs64 = make(B, C, G, H, W, rank=rank, skip=skip)
    inputs32 = [t.detach().float().requires_grad_() if t is not None else None for t in inputs64]
    for chunk in (None, 3):
        got = run(inputs32, G, "cpu", chunk=chunk, skip=skip)
        want = run(inputs64, G, "reference", chunk=chunk, skip=skip)
        for name, g, w in zip(NAMES, got, want):
            if w is None:
                continue
            assert g.dtype == torch.float32
            torch.testing.assert_close(g.double(), w, atol=2e-4, rtol=2e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck(backend):
    require(backend)
    for C, G, skip, rank in [(1, 1, True, None), (2, 1, False, 2)]:
        x, params, merge, proj = make(1, C, G, 2, 3, skip=skip, rank=rank)
        for save in (False, True):
            def fn(*t):
                return mixer_propagate(t[0], t[1], t[2], groups=G, proj=t[3] if len(t) > 3 else None, chunk=2,
                                       skip=skip, save_states=save, backend=backend)
            assert torch.autograd.gradcheck(fn, [t for t in (x, params, merge, proj) if t is not None], fast_mode=True)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bfloat16_runs_in_float32(backend):
    require(backend)
    inputs = make(1, 4, 4, 9, 11, rank=3)
    low = [t.detach().to(torch.bfloat16).requires_grad_() for t in inputs]
    exact = run([t.detach().double().requires_grad_() for t in low], 4, "reference")
    got = run(low, 4, backend)
    for name, g, w in zip(NAMES, got, exact):  # within bfloat16's rounding of the largest value
        assert g.dtype == torch.bfloat16
        assert (g.double() - w).abs().max() <= 0.02 * w.abs().max(), name


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bfloat16_counter_accumulates_in_float32(backend):
    """lam * x = 1, u = 1 and the logits of stochastic rows, 4096 steps in bfloat16: h counts the steps
    (a bfloat16 accumulator stalls at 256); merge picks direction lr, whose h ends at 4096."""
    require(backend)
    H, W, C = 2, 4096, 1
    Q = mixer_reference.channels_per_direction(C, C, False)
    params = torch.zeros(1, 4, Q, H, W)
    params[:, :, 3:] = 1.0  # lam, u; zero logits: b = 1/2 at both borders of the 2-row cross axis
    y = mixer_propagate(torch.ones(1, C, H, W, dtype=torch.bfloat16), params.view(1, -1, H, W).to(torch.bfloat16),
                        torch.tensor([1.0, 0, 0, 0]), groups=C, skip=False, backend=backend)
    steps = torch.arange(1.0, W + 1).expand(1, C, H, W)
    assert torch.equal(y, steps.to(torch.bfloat16)), f"max {y.float().max().item()}"


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("shape", [(0, 2, 3, 4), (1, 2, 0, 4), (2, 2, 3, 0)])
def test_empty_inputs(backend, shape):
    require(backend)
    B, C, H, W = shape
    x, params, merge, proj = make(B, C, C, H, W, rank=2)
    for p in (None, proj):
        z = params if p is not None else torch.zeros(B, 4 * (3 * C + 3 * C), H, W, dtype=x.dtype, requires_grad=True)
        y = mixer_propagate(x, z, merge, groups=C, proj=p, backend=backend, save_states=p is None)
        assert y.shape == shape
        grads = torch.autograd.grad(y.sum(), [t for t in (x, z, merge, p) if t is not None], materialize_grads=True)
        for g, t in zip(grads, (x, z, merge, p)):
            assert g.shape == t.shape and not g.any()


def test_cpu_backend_runs_the_fused_kernel_and_others_the_composition(monkeypatch):
    """cpu tensors: the fused kernel; backend "reference": the composition of reference scans; a CUDA
    backend (stood in for by the cpu module's scan functions): the composition of its scans."""
    require("cpu")
    calls = []
    for name, fn in (("fused forward", "mixer_forward"), ("fused backward", "mixer_backward"),
                     ("cpu scan", "forward"), ("cpu scan backward", "backward")):
        original = getattr(cpu, fn)
        monkeypatch.setattr(cpu, fn, lambda *a, _o=original, _n=name: calls.append(_n) or _o(*a))
    inputs = make(1, 2, 2, 3, 4)
    want = run(inputs, 2, "reference")
    assert calls == []
    assert_all_close(run(inputs, 2, None), want)
    assert calls == ["fused forward", "fused backward"]
    calls.clear()

    class FakeCuda:  # what mixer.py gets from resolve() for CUDA tensors: a module of single-direction scans
        forward = staticmethod(cpu.forward)
        backward = staticmethod(cpu.backward)

    mixer_module = __import__("gspn.ops.mixer", fromlist=["resolve"])
    monkeypatch.setattr(mixer_module, "resolve", lambda backend, device: FakeCuda)
    assert_all_close(run(inputs, 2, None), want)
    assert calls == ["cpu scan"] * 4 + ["cpu scan", "cpu scan backward"] * 4, calls
    calls.clear()

    class FakeFusedCuda(FakeCuda):  # once the CUDA module offers a fused kernel, it is the one that runs
        mixer_forward = staticmethod(cpu.mixer_forward)
        mixer_backward = staticmethod(cpu.mixer_backward)

    monkeypatch.setattr(mixer_module, "resolve", lambda backend, device: FakeFusedCuda)
    assert_all_close(run(inputs, 2, None), want)
    assert calls == ["fused forward", "fused backward"]
    assert backends.BACKENDS["cuda"] is not cpu


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_opcheck(backend):
    require(backend)
    x, params, merge, proj = make(1, 2, 2, 3, 4, rank=2)
    torch.library.opcheck(torch.ops.gspn.mixer_propagate.default, (x, params, merge, proj, 2, 2, True, False, backend))
    y, states = torch.ops.gspn.mixer_propagate(x, params, merge, proj, 2, 2, True, True, backend)
    args = tuple(t.detach() for t in (torch.randn_like(x), x, params, merge, proj, states))
    torch.library.opcheck(torch.ops.gspn.mixer_propagate_backward.default, args + (2, 2, True, backend))


def test_flop_formula_counts_scans_merge_and_projection():
    x, params, merge, proj = make(2, 3, 3, 4, 5, rank=2, dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        mixer_propagate(x, params, merge, groups=3, proj=proj).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    projection = 2 * 4 * 5 * proj.numel()
    assert counts[torch.ops.gspn.mixer_propagate] == 2 * (20 * x.numel() + projection)
    assert counts[torch.ops.gspn.mixer_propagate_backward] == 2 * (40 * x.numel() + 2 * projection)


BAD = [
    (dict(groups=4), ValueError, r"`groups` must be an int >= 1 dividing C = 6"),
    (dict(merge=torch.zeros(3)), ValueError, r"`merge` must have shape \(4,\)"),
    (dict(params=torch.zeros(1, 7, 3, 4)), ValueError, r"`params` must be \(B, 4 \* Q, H, W\) = \(1, 144, 3, 4\)"),
    (dict(chunk=0), ValueError, r"`chunk` must be None \(global\) or an int >= 1, got 0"),
    (dict(backend="triton"), ValueError, r"`backend` must be None or one of"),
    (dict(proj=torch.zeros(5, 2)), ValueError, r"`proj` must be \(4 \* Q, R\) = \(144, R\)"),
]


@pytest.mark.parametrize("changes,error,message", BAD)
def test_bad_input_is_named(changes, error, message):
    args = dict(x=torch.zeros(1, 6, 3, 4), params=torch.zeros(1, 144, 3, 4), merge=torch.zeros(4), groups=6)
    args.update(changes)
    with pytest.raises(error, match=message):
        mixer_propagate(**args)


def test_cpu_kernel_is_deterministic():
    """Bit-identical gradients run after run (gradcheck's reentrancy check relies on it), with two threads."""
    require("cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for rank in (None, 3):
            inputs = make(2, 6, 6, 9, 13, rank=rank, dtype=torch.float32)
            first = run(inputs, 6, "cpu")
            for _ in range(3):
                for g, w in zip(run(inputs, 6, "cpu"), first):
                    assert (g is None and w is None) or torch.equal(g, w)
    finally:
        torch.set_num_threads(before)
