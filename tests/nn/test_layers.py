"""The small layers: norms, GRN, stochastic depth, the block."""

import torch

from gspn.nn import GRN, DropPath, GSPNBlock, LayerNorm2d


def test_layernorm2d_normalises_channels():
    norm = LayerNorm2d(6)
    x = torch.randn(2, 6, 3, 5)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def test_grn_starts_as_identity_and_parameters_are_vectors():
    grn = GRN(4)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(grn(x), x)
    assert grn.gamma.shape == grn.beta.shape == (4,)


def test_grn_adds_each_channel_scaled_by_its_share_of_the_spatial_energy():
    """x + gamma * x * N(x) + beta, N = a channel's spatial L2 norm over the mean of that norm over channels."""
    grn = GRN(3)
    with torch.no_grad():
        grn.gamma.copy_(torch.tensor([0.5, -1.0, 2.0]))
        grn.beta.copy_(torch.tensor([0.1, 0.0, -0.3]))
    x = torch.randn(2, 3, 4, 5)
    y = grn(x)
    for n in range(2):
        norms = [x[n, ch].square().sum().sqrt() for ch in range(3)]
        for ch in range(3):
            share = norms[ch] / (sum(norms) / 3 + grn.eps)
            expected = x[n, ch] + grn.gamma[ch] * x[n, ch] * share + grn.beta[ch]
            torch.testing.assert_close(y[n, ch], expected.detach())


def test_drop_path_drops_whole_samples_in_training_only():
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 2, 2)
    torch.testing.assert_close(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_block_with_local_perception_unit():
    """The unit, a depthwise 3x3 conv residual, runs first: the block is its pre-norm residual branches
    applied to x + lpu(x)."""
    block = GSPNBlock(8, chunk=2, d_state=4, compact=True, lpu=True)
    assert block.lpu.groups == 8 and block.lpu.kernel_size == (3, 3)
    x = torch.randn(1, 8, 5, 3)
    x1 = x + block.lpu(x)
    x2 = x1 + block.mixer(block.norm1(x1))
    torch.testing.assert_close(block(x), x2 + block.mlp(block.norm2(x2)))
