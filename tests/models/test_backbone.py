"""The backbone's API: intermediates on odd and non-square inputs, head, checkpointing, autocast."""

import math

import pytest
import torch

from gspn.models import GSPNBackbone, create_model


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return create_model("gspn_nano", num_classes=10).eval()


@pytest.mark.parametrize("size", [(33, 47), (32, 32), (65, 40)])
def test_intermediates_have_strides_4_to_32(nano, size):
    maps = nano.forward_intermediates(torch.randn(2, 3, *size))
    assert len(maps) == 4
    for i, (m, info) in enumerate(zip(maps, nano.feature_info)):
        assert info["reduction"] == 4 * 2**i
        expected = tuple(math.ceil(s / info["reduction"]) for s in size)
        assert m.shape == (2, info["num_chs"], *expected), f"stage {i}: {tuple(m.shape)}"
    assert nano.forward_features(torch.randn(1, 3, *size)).shape == (1, nano.num_features, *maps[-1].shape[2:])


def test_head_and_reset_classifier():
    model = create_model("gspn_nano", num_classes=10)
    x = torch.randn(2, 3, 40, 36)
    features = model.forward_features(x)
    assert model(x).shape == (2, 10)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(3)
    assert model.num_classes == 3 and model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


def test_no_weight_decay_names_norms_biases_and_scalars(nano):
    names = nano.no_weight_decay()
    params = dict(nano.named_parameters())
    assert "head.norm.weight" in names and "head.fc.bias" in names
    assert "stages.0.blocks.0.mixer.merge" in names and "stages.0.blocks.0.mixer.grn.gamma" in names
    assert "head.fc.weight" not in names and "stem.0.weight" not in names
    assert all(params[n].ndim <= 1 for n in names)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("gspn_nano", num_classes=4).train()
    x = torch.randn(2, 3, 32, 40)

    def grads():
        model.zero_grad()
        model(x).square().sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_stochastic_depth_rises_linearly_to_the_rate():
    model = create_model("gspn_nano", drop_path_rate=0.3)
    rates = [b.drop_path.p for s in model.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)


def test_bf16_autocast_forward_and_backward(nano):
    x = torch.randn(2, 3, 32, 36)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = nano(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), nano(x), atol=0.1, rtol=0.1)
    model = create_model("gspn_nano", num_classes=10).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().logsumexp(1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_compact_mode_backbone_trains():
    model = create_model("gspn_nano", num_classes=5, compact=True, lpu=True)
    model(torch.randn(2, 3, 33, 35)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_chunks_are_named():
    with pytest.raises(ValueError, match="stage 2 has 2 blocks but 3 chunks"):
        GSPNBackbone(16, (1, 1, 2, 1), chunks=(2, 2, [None, 2, 2], None))
    with pytest.raises(ValueError, match="one entry per stage"):
        GSPNBackbone(16, (1, 1, 2), chunks=(2, 2, None))
