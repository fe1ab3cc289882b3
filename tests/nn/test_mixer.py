"""The mixer: directions aligned in the input's frame, global reach at any size, both channel modes."""

import pytest
import torch

from gspn.nn import DIRECTIONS, GSPNMixer, scan_directions

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
