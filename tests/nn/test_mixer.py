"""The mixer: the layer against its definition over the op's reference backend, global reach at any size,
both channel modes. (The directions themselves are tested on the op: tests/ops/test_mixer_op.py.)"""

import pytest
import torch

from gspn.nn import GSPNMixer, configure_mixers
from gspn.ops import DIRECTIONS, mixer_propagate


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("size", [(5, 8), (9, 4), (1, 6)])
def test_mixer_keeps_the_shape_of_any_map(compact, size):
    mixer = GSPNMixer(8, chunk=2, d_state=4, compact=compact)
    x = torch.randn(2, 8, *size, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert all(p.grad is not None for p in mixer.parameters())


def _reach(mixer, width):
    """Whether the leftmost column of the input changes the rightmost column of the output."""
    x = torch.randn(1, mixer.in_proj.in_channels, 6, width, requires_grad=True)
    mixer(x)[..., -1].sum().backward()
    return x.grad[..., 0].abs().max().item()


@pytest.mark.parametrize("compact", [False, True])
def test_a_global_layer_stays_global_at_twice_the_size(compact):
    torch.manual_seed(0)
    global_mixer = GSPNMixer(8, chunk=None, d_state=4, compact=compact)
    local_mixer = GSPNMixer(8, chunk=2, d_state=4, compact=compact)
    for width in (32, 64):  # 64: twice a "training" size of 32
        assert _reach(global_mixer, width) > 0
        assert _reach(local_mixer, width) == 0
    assert global_mixer.chunk is None and local_mixer.chunk == 2


def definition(mixer, x):
    """The mixer written out over the op's reference backend, one direction at a time (a one-hot merge
    gives direction k's u_k h_k, plus d_k x with the skip), merged here: GSPN-1 with `up` applied as a
    conv outside the op, GSPN-2 with `up` and its skip applied per direction before the merge."""
    p = mixer.propagation
    x = mixer.dwconv(mixer.in_proj(x))
    one_hot = torch.eye(len(DIRECTIONS))
    if hasattr(p, "skip"):  # GSPN-2
        scans = [mixer_propagate(p.down(x), p.params(x), e, groups=1, chunk=p.chunk, skip=False, backend="reference")
                 for e in one_hot]
        y = sum(m * (p.up(h) + skip.view(1, -1, 1, 1) * x) for m, h, skip in zip(mixer.merge, scans, p.skip))
    else:
        params = p.up(p.down(x))
        y = sum(m * mixer_propagate(x, params, e, groups=x.shape[1], chunk=p.chunk, skip=True, backend="reference")
                for m, e in zip(mixer.merge, one_hot))
    return mixer.out_proj(mixer.grn(mixer.norm(y)))


def _outputs_and_grads(mixer, x, forward=None):
    y = (forward or mixer)(x)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    return [y] + list(torch.autograd.grad((y * weight).sum(), [x] + list(mixer.parameters())))


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("chunk,size", [(None, (7, 10)), (3, (9, 5))])
def test_mixer_equals_its_definition_over_the_reference_op(compact, chunk, size):
    """The layer (the op's fused kernel, `up` inside it for GSPN-1, the merge before `up` for GSPN-2)
    against its definition: output and every gradient (input and parameters) to float32 rounding,
    with and without saved hidden states."""
    torch.manual_seed(0)
    mixer = GSPNMixer(12, chunk=chunk, d_state=4, compact=compact)
    with torch.no_grad():
        mixer.merge.copy_(torch.tensor([0.7, -0.3, 0.45, 0.2]))
        mixer.grn.gamma.normal_()
    x = torch.randn(2, 12, *size, requires_grad=True)
    want = _outputs_and_grads(mixer, x, lambda x: definition(mixer, x))
    names = ["y", "x"] + [n for n, _ in mixer.named_parameters()]
    for save in (False, True):
        configure_mixers(mixer, save_states=save)
        for name, g, w in zip(names, _outputs_and_grads(mixer, x), want, strict=True):
            scale = w.abs().max()  # reductions over many pixels (merge, GRN) round at their own scale
            # the merge gradient sums terms that largely cancel, in another order (GSPN-2 merges before up)
            atol = 5e-4 if name == "merge" else 2e-6
            torch.testing.assert_close(g / scale, w / scale, atol=atol, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("compact", [False, True])
def test_mixer_under_bf16_autocast_is_bounded(compact):
    torch.manual_seed(0)
    mixer = GSPNMixer(8, chunk=None, d_state=4, compact=compact)
    x = torch.randn(2, 8, 6, 7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x)
    y.float().square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y.float(), definition(mixer, x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("compact", [False, True])
def test_torch_compile_traces_the_mixer_without_graph_breaks(compact):
    torch.manual_seed(0)
    mixer = GSPNMixer(8, chunk=2, d_state=4, compact=compact)
    x = torch.randn(1, 8, 5, 6, requires_grad=True)
    want = _outputs_and_grads(mixer, x)
    compiled = torch.compile(mixer, fullgraph=True, backend="aot_eager")
    for g, w in zip(_outputs_and_grads(compiled, x), want):
        torch.testing.assert_close(g, w)


def _saved_bytes(mixer, x, forward=None):
    seen = {}
    skip = {p.untyped_storage().data_ptr() for p in mixer.parameters()} | {x.untyped_storage().data_ptr()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        (forward or mixer)(x)
    return sum(seen.values())


def test_gspn1_mixer_saves_under_a_quarter_of_the_activations_of_its_definition():
    """`up` runs inside the op: its 24C-channel output, which the definition materialises, is never stored."""
    mixer = GSPNMixer(16, d_state=8)
    x = torch.randn(2, 16, 24, 24, requires_grad=True)
    layer = _saved_bytes(mixer, x)
    written_out = _saved_bytes(mixer, x, lambda x: definition(mixer, x))
    assert layer * 4 <= written_out, (layer, written_out)


def test_configure_mixers_sets_the_ops_options():
    mixer = GSPNMixer(8, d_state=4)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    recomputing = _saved_bytes(mixer, x)
    configure_mixers(mixer, save_states=True)
    states = 4 * 2 * mixer.in_proj.out_channels * 5 * 6 * 4  # (B, 4, C, H, W) hidden states in float32
    assert _saved_bytes(mixer, x) - recomputing == states
    configure_mixers(mixer, backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda' cannot run on cpu"):
        mixer(x)
    with pytest.raises(TypeError, match=r"unknown options \['fused'\]"):
        configure_mixers(mixer, fused=False)
