"""The attention control: SelfAttention against torch's MultiheadAttention, the sin-cos position embedding
against its formula."""

import math

import pytest
import torch
from torch import nn

from gspn.nn import SelfAttention, sincos_position_2d


def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    layer, reference = SelfAttention(12, 3), nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(layer.qkv.weight)
        reference.in_proj_bias.copy_(layer.qkv.bias)
        reference.out_proj.weight.copy_(layer.proj.weight)
        reference.out_proj.bias.copy_(layer.proj.bias)
    x = torch.randn(2, 12, 3, 5)
    tokens = x.flatten(2).transpose(1, 2)
    expected = reference(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(layer(x), expected)


def test_self_attention_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="heads must be a positive divisor of the width 12"):
        SelfAttention(12, 5)


def test_sincos_position_encodes_row_then_column():
    dim, height, width = 8, 3, 5
    embedding = sincos_position_2d(dim, height, width)
    assert embedding.shape == (dim, height, width)
    freqs = [math.exp(-math.log(10000.0) * k / 2) for k in range(2)]
    for i, j in [(0, 0), (2, 4), (1, 3)]:
        expected = [math.sin(i * f) for f in freqs] + [math.cos(i * f) for f in freqs] \
            + [math.sin(j * f) for f in freqs] + [math.cos(j * f) for f in freqs]
        torch.testing.assert_close(embedding[:, i, j], torch.tensor(expected))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_position_2d(6, 2, 2)
