"""The public entry point: errors for bad input, the custom op contract, dispatch, long scans."""

import pytest
import torch

from gspn.ops import DIRECTIONS, cpu, propagate, reference_backend
from tests.ops.test_reference import make_inputs

# Names, not available_backends(): collecting the tests must build nothing; `require` builds inside a test.
CPU_BACKENDS = ["reference", "cpu"]


def require(backend: str) -> None:
    """The cpu kernels must build here: a failed build fails the test that needs them (never a skip)."""
    if backend == "cpu":
        reason = cpu.unavailable_reason(torch.device("cpu"))
        assert reason is None, f"the cpu kernels are unavailable: {reason}"


def good(**changes):
    x, lam, a, b, c = (t.detach() for t in make_inputs(2, 4, 2, 3, 5, dtype=torch.float32))
    args = dict(x=x, lam=lam, a=a, b=b, c=c)
    args.update(changes)
    return args


BAD_INPUTS = [
    (dict(x=torch.zeros(4, 3, 5)), ValueError, r"`x` must have 4 dims .* got shape \(4, 3, 5\)"),
    (dict(lam=torch.zeros(2, 4, 3, 6)), ValueError, r"`lam` must have x's shape \(2, 4, 3, 5\), got \(2, 4, 3, 6\)"),
    (dict(a=torch.zeros(2, 3, 3, 5)), ValueError, r"`a` must have shape \(B, G, H, W\) .* G dividing C = 4, got \(2, 3, 3, 5\)"),
    (dict(b=torch.zeros(2, 1, 3, 5)), ValueError, r"`b` must have shape \(B, G, H, W\) = \(2, 2, 3, 5\)"),
    (dict(c=torch.zeros(2, 2, 5, 3)), ValueError, r"`c` must have shape .* got \(2, 2, 5, 3\)"),
    (dict(x=torch.zeros(2, 4, 3, 5, dtype=torch.int64)), TypeError, r"`x` must be floating point, got torch.int64"),
    (dict(a=torch.zeros(2, 2, 3, 5, dtype=torch.float64)), TypeError, r"`a` is .*float64.* but `x` is .*float32"),
    (dict(x=[[1.0]]), TypeError, r"`x` must be a torch.Tensor, got list"),
    (dict(direction="left"), ValueError, r"`direction` must be one of \('lr', 'rl', 'tb', 'bt'\), got 'left'"),
    (dict(chunk=0), ValueError, r"`chunk` must be None \(global\) or an int >= 1, got 0"),
    (dict(chunk=2.0), ValueError, r"`chunk` .* got 2.0"),
    (dict(backend="triton"), ValueError, r"`backend` must be None or one of .*, got 'triton'"),
]


@pytest.mark.parametrize("changes,error,message", BAD_INPUTS)
def test_bad_input_is_named(changes, error, message):
    with pytest.raises(error, match=message):
        propagate(**good(**changes))


def test_mixed_devices_are_refused():
    args = good(b=good()["b"].to("meta"))
    with pytest.raises(TypeError, match=r"`b` is .* on meta but `x` is .* on cpu"):
        propagate(**args)


def test_unavailable_backend_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"backend 'cuda' cannot run on cpu"):
        propagate(**good(), backend="cuda")


def test_environment_variable_forces_backend(monkeypatch):
    monkeypatch.setenv("GSPN_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda'"):
        propagate(**good())
    monkeypatch.setenv("GSPN_BACKEND", "reference")
    ran = []
    monkeypatch.setattr(reference_backend, "forward", lambda *args, _run=reference_backend.forward: ran.append(1)
                        or _run(*args))
    torch.testing.assert_close(propagate(**good()), propagate(**good(), backend="reference"))
    assert ran == [1, 1], "the reference ran for the variable as for the argument"


def test_non_contiguous_inputs():
    args = good()
    strided = {k: v.transpose(2, 3).contiguous().transpose(2, 3) for k, v in args.items()}
    assert not strided["x"].is_contiguous()
    torch.testing.assert_close(propagate(**strided, direction="tb"), propagate(**args, direction="tb"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    require(backend)
    x, lam, a, b, c = make_inputs(2, 4, 2, 3, 5)
    torch.library.opcheck(torch.ops.gspn.propagate.default, (x, lam, a, b, c, "rl", 2, backend))
    dh = torch.randn_like(x)
    h = propagate(x, lam, a, b, c, direction="rl", chunk=2, backend=backend).detach()
    torch.library.opcheck(torch.ops.gspn.propagate_backward.default,
                          tuple(t.detach() for t in (dh, x, lam, a, b, c, h)) + ("rl", 2, backend))


def test_torch_compile_traces_without_graph_breaks():
    def layer(x, lam, a, b, c):
        return sum(propagate(x, lam, a.sigmoid(), b.sigmoid(), c.sigmoid(), direction=d, chunk=2)
                   for d in DIRECTIONS)

    inputs = make_inputs(1, 2, 1, 4, 6, dtype=torch.float32)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    eager_out = layer(*inputs)
    eager_grads = torch.autograd.grad(eager_out.sum(), inputs)
    out = compiled(*inputs)
    torch.testing.assert_close(out, eager_out)
    for got, want in zip(torch.autograd.grad(out.sum(), inputs), eager_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("direction", ["lr", "bt"])
def test_long_stochastic_scan_stays_bounded(backend, direction):
    """Row-stochastic weights (docs/design.md §1.2) keep |h| <= max|lam x| * steps over 4096 steps in float32."""
    require(backend)
    H, W = (8, 4096) if direction == "lr" else (4096, 8)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 1, H, W, generator=gen).sigmoid()
    cross = -2 if direction == "lr" else -1
    first = [slice(None)] * 5
    first[cross] = slice(0, 1)
    last = [slice(None)] * 5
    last[cross] = slice(-1, None)
    logits[0][tuple(first[1:])] = 0  # no neighbour before the first cross position
    logits[2][tuple(last[1:])] = 0   # nor after the last
    a, b, c = logits / logits.sum(0, keepdim=True)
    x = torch.randn(1, 2, H, W, generator=gen)
    lam = torch.ones_like(x)
    h = propagate(x, lam, a, b, c, direction=direction, backend=backend)
    steps = W if direction == "lr" else H
    assert torch.isfinite(h).all()
    assert h.abs().max() <= x.abs().max() * steps
    # with lam * x = 1 everywhere, stochastic rows make the state count the steps walked exactly
    h = propagate(torch.ones_like(x), lam, a, b, c, direction=direction, backend=backend)
    walked = torch.arange(steps, 0, -1.0) if direction == "bt" else torch.arange(1.0, steps + 1)
    walked = walked.view(1, 1, 1, W) if direction == "lr" else walked.view(1, 1, H, 1)
    torch.testing.assert_close(h, walked.expand_as(h), rtol=1e-4, atol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype,ulp", [(torch.bfloat16, 2 ** -7), (torch.float16, 2 ** -10)])
def test_low_precision_inputs_accumulate_in_float32(backend, dtype, ulp):
    """Within one unit in the last place of the exact scan of the same (rounded) inputs: a float32
    accumulator rounds once, at the end; a float16 or bfloat16 one is off by far more over 64 steps."""
    require(backend)
    inputs = [t.detach().to(dtype) for t in make_inputs(1, 2, 1, 6, 64, dtype=torch.float32)]
    got = propagate(*inputs, backend=backend)
    assert got.dtype == dtype
    exact = propagate(*(t.double() for t in inputs), backend="reference")
    torch.testing.assert_close(got.double(), exact, rtol=ulp, atol=1e-5)


def dyadic_stochastic_weights(H, W, direction, seed=0):
    """Row-stochastic weights (docs/design.md §1.2) whose values are multiples of 1/8, exact in bfloat16.

    Each position draws one of a few triples summing to one; the cross axis' first position has no
    `a` and its last no `c`. With lam * x = 1 the state then counts the steps walked, exactly in float32.
    """
    inner = torch.tensor([[0.25, 0.5, 0.25], [0.125, 0.75, 0.125], [0.5, 0.25, 0.25], [0.0, 0.875, 0.125]])
    first = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.75, 0.25]])
    last = torch.tensor([[0.5, 0.5, 0.0], [0.125, 0.875, 0.0]])
    gen = torch.Generator().manual_seed(seed)
    w = inner[torch.randint(len(inner), (H, W), generator=gen)]  # (H, W, 3)
    cross = 0 if direction in ("lr", "rl") else 1
    n = w.shape[cross]
    lo = first[torch.randint(len(first), (W if cross == 0 else H,), generator=gen)]
    hi = last[torch.randint(len(last), (W if cross == 0 else H,), generator=gen)]
    w.select(cross, 0).copy_(lo)
    w.select(cross, n - 1).copy_(hi)
    return [w[..., i].view(1, 1, H, W) for i in range(3)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("direction", ["lr", "bt"])
def test_bfloat16_counter_accumulates_in_float32(backend, direction):
    """bfloat16 inputs, 4096 steps: with lam * x = 1 and stochastic rows h after n steps is n exactly when
    the scan accumulates in float32; a bfloat16 accumulator stalls at 256 (256 + 1 rounds back to 256)."""
    require(backend)
    H, W = (4, 4096) if direction == "lr" else (4096, 4)
    a, b, c = (w.to(torch.bfloat16) for w in dyadic_stochastic_weights(H, W, direction))
    assert torch.equal((a + b + c).float(), torch.ones(1, 1, H, W))
    x = torch.ones(1, 2, H, W, dtype=torch.bfloat16)
    h = propagate(x, x, a, b, c, direction=direction, backend=backend)
    steps = W if direction == "lr" else H
    walked = torch.arange(steps, 0, -1.0) if direction == "bt" else torch.arange(1.0, steps + 1)
    walked = walked.view(1, 1, 1, W) if direction == "lr" else walked.view(1, 1, H, 1)
    assert h.dtype == torch.bfloat16
    assert torch.equal(h, walked.expand_as(h).to(torch.bfloat16)), f"max state {h.float().max().item()}"


EMPTY_SHAPES = [(0, 4, 3, 5), (2, 0, 3, 5), (2, 4, 0, 5), (2, 4, 3, 0), (0, 0, 0, 0)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", EMPTY_SHAPES)
def test_empty_inputs_give_empty_results(backend, shape):
    """Any zero-size dim (an empty batch first of all) is an empty result and empty (or zero) gradients."""
    require(backend)
    B, C, H, W = shape
    G = 2 if C else 1
    gen = torch.Generator().manual_seed(0)
    x, lam = (torch.randn(shape, generator=gen).requires_grad_() for _ in range(2))
    a, b, c = (torch.rand(B, G, H, W, generator=gen).requires_grad_() for _ in range(3))
    for direction in ("lr", "tb"):
        h = propagate(x, lam, a, b, c, direction=direction, chunk=2, backend=backend)
        assert h.shape == shape
        grads = torch.autograd.grad(h.sum(), (x, lam, a, b, c), materialize_grads=True)
        for g, t in zip(grads, (x, lam, a, b, c)):
            assert g.shape == t.shape and not g.any()


@pytest.mark.parametrize("shape", EMPTY_SHAPES)
def test_cpu_kernel_itself_takes_empty_inputs(shape):
    """The kernel entry points directly (behind propagate's own guard): no division by B * G = 0."""
    require("cpu")
    B, C, H, W = shape
    x = torch.zeros(shape)
    w = torch.zeros(B, 1, H, W)
    assert torch.ops.gspn_cpu.forward(x, x, w, w, w, "rl", 0).shape == shape
    grads = torch.ops.gspn_cpu.backward(x, x, x, w, w, w, x, "bt", 3)
    assert [g.shape for g in grads] == [x.shape, x.shape, w.shape, w.shape, w.shape]
