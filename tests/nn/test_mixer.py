"""The mixer: directions aligned in the input's frame, global reach at any size, both channel modes."""

import pytest
import torch

from gspn.nn import DIRECTIONS, GSPNMixer, scan_directions, use_fused_mixers

H, W = 5, 8  # non-square on purpose: the official transposed-copy merge cannot run it


def _uniform_params(x, groups=None):
    """lam = u = 1 and zero logits (every weight 1/3, 1/2 at the borders) for all four directions."""
    B, C, h, w = x.shape
    ones = torch.ones(B, len(DIRECTIONS), C, h, w)
    logits = torch.zeros(B, len(DIRECTIONS), groups or C, h, w)
    return dict(lam=ones, u=ones, a=logits, b=logits, c=logits)


def _cone(direction, i0, j0):
    i = torch.arange(H).view(H, 1)
    j = torch.arange(W).view(1, W)
    along, across = {"lr": (j - j0, i - i0), "rl": (j0 - j, i - i0),
                     "tb": (i - i0, j - j0), "bt": (i0 - i, j - j0)}[direction]
    return (along >= 0) & (across.abs() <= along)


@pytest.mark.parametrize("i0,j0", [(2, 3), (0, 0), (4, 7), (1, 6)])
def test_an_impulse_spreads_only_into_each_directions_cone(i0, j0):
    x = torch.zeros(1, 1, H, W)
    x[0, 0, i0, j0] = 1.0
    y = scan_directions(x, **_uniform_params(x))
    for k, direction in enumerate(DIRECTIONS):
        reached = y[0, k, 0] != 0
        assert torch.equal(reached, _cone(direction, i0, j0)), f"{direction}:\n{reached.int()}"


def _random_params(B, C, h, w, groups):
    return dict(lam=torch.randn(B, 4, C, h, w), u=torch.randn(B, 4, C, h, w),
                a=torch.randn(B, 4, groups, h, w), b=torch.randn(B, 4, groups, h, w),
                c=torch.randn(B, 4, groups, h, w))


@pytest.mark.parametrize("groups", [3, 1])
@pytest.mark.parametrize("forward,backward,dim", [("lr", "rl", -1), ("tb", "bt", -2)])
def test_flipping_along_the_scan_swaps_opposite_directions(groups, forward, backward, dim):
    """Flipping the scan axis turns a scan into its opposite; the cross axis (and a, c) stay put."""
    x = torch.randn(2, 3, H, W)
    params = _random_params(2, 3, H, W, groups)
    f, b = DIRECTIONS.index(forward), DIRECTIONS.index(backward)
    y = scan_directions(x, **params, chunk=3)
    swapped = {k: v.flip(dim)[:, [b if d == f else f if d == b else d for d in range(4)]] for k, v in params.items()}
    y_flipped = scan_directions(x.flip(dim), **swapped, chunk=3)
    torch.testing.assert_close(y_flipped[:, f].flip(dim), y[:, b])
    torch.testing.assert_close(y_flipped[:, b].flip(dim), y[:, f])


def test_transposing_the_input_maps_horizontal_scans_to_vertical_ones():
    x = torch.randn(1, 2, H, W)
    params = _random_params(1, 2, H, W, 2)
    y = scan_directions(x, **params)
    swap = [DIRECTIONS.index(d) for d in ("tb", "bt", "lr", "rl")]
    yt = scan_directions(x.transpose(-1, -2), **{k: v.transpose(-1, -2)[:, swap] for k, v in params.items()})
    torch.testing.assert_close(yt[:, swap].transpose(-1, -2), y)


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


def test_mixer_runs_under_bf16_autocast():
    mixer = GSPNMixer(8, chunk=None, d_state=4)
    x = torch.randn(2, 8, 6, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), mixer(x), atol=0.05, rtol=0.05)


def _outputs_and_grads(mixer, x):
    y = mixer(x)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    return [y] + list(torch.autograd.grad((y * weight).sum(), [x] + list(mixer.parameters())))


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("chunk,size", [(None, (7, 10)), (3, (9, 5))])
def test_fused_mixer_equals_the_per_direction_path(compact, chunk, size):
    """The fused op against the composition of propagate calls: output and every gradient (input and
    parameters) to float32 rounding, with and without saved hidden states."""
    torch.manual_seed(0)
    mixer = GSPNMixer(12, chunk=chunk, d_state=4, compact=compact)
    with torch.no_grad():
        mixer.merge.copy_(torch.tensor([0.7, -0.3, 0.45, 0.2]))
        mixer.grn.gamma.normal_()
    x = torch.randn(2, 12, *size, requires_grad=True)
    mixer.fused = False
    want = _outputs_and_grads(mixer, x)
    names = ["y", "x"] + [n for n, _ in mixer.named_parameters()]
    for save in (False, True):
        use_fused_mixers(mixer, True, save_states=save)
        for name, g, w in zip(names, _outputs_and_grads(mixer, x), want):
            scale = w.abs().max()  # reductions over many pixels (merge, GRN) round at their own scale
            # the merge gradient sums terms that largely cancel, in another order (GSPN-2 merges before up)
            atol = 5e-4 if name == "merge" else 2e-6
            torch.testing.assert_close(g / scale, w / scale, atol=atol, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("compact", [False, True])
def test_fused_mixer_under_bf16_autocast_is_bounded(compact):
    torch.manual_seed(0)
    mixer = GSPNMixer(8, chunk=None, d_state=4, compact=compact)
    x = torch.randn(2, 8, 6, 7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x)
    y.float().square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    mixer.fused = False
    torch.testing.assert_close(y.float(), mixer(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("compact", [False, True])
def test_torch_compile_traces_the_fused_mixer_without_graph_breaks(compact):
    torch.manual_seed(0)
    mixer = GSPNMixer(8, chunk=2, d_state=4, compact=compact)
    x = torch.randn(1, 8, 5, 6, requires_grad=True)
    want = _outputs_and_grads(mixer, x)
    compiled = torch.compile(mixer, fullgraph=True, backend="aot_eager")
    for g, w in zip(_outputs_and_grads(compiled, x), want):
        torch.testing.assert_close(g, w)


def _saved_bytes(mixer, x):
    seen = {}
    skip = {p.untyped_storage().data_ptr() for p in mixer.parameters()} | {x.untyped_storage().data_ptr()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mixer(x)
    return sum(seen.values())


def test_fused_gspn1_mixer_saves_under_a_quarter_of_the_per_direction_activations():
    mixer = GSPNMixer(16, d_state=8)
    x = torch.randn(2, 16, 24, 24, requires_grad=True)
    fused = _saved_bytes(mixer, x)
    mixer.fused = False
    per_direction = _saved_bytes(mixer, x)
    assert fused * 4 <= per_direction, (fused, per_direction)
