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


def test_drop_path_drops_whole_samples_in_training_only():
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 2, 2)
    torch.testing.assert_close(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_block_with_local_perception_unit():
    block = GSPNBlock(8, chunk=2, d_state=4, compact=True, lpu=True)
    assert block.lpu is not None and block.lpu.groups == 8
    x = torch.randn(1, 8, 5, 3)
    assert block(x).shape == x.shape
