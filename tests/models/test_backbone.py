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
    x = torch.randn(2, 3, *size)
    final, maps = nano.forward_intermediates(x)
    assert len(maps) == 4
    for i, (m, info) in enumerate(zip(maps, nano.feature_info)):
        assert info["reduction"] == 4 * 2**i
        expected = tuple(math.ceil(s / info["reduction"]) for s in size)
        assert m.shape == (2, info["num_chs"], *expected), f"stage {i}: {tuple(m.shape)}"
    assert torch.equal(final, maps[-1])
    assert torch.equal(nano.forward_features(x), final)


def test_intermediates_selection_norms_and_layout(nano):
    x = torch.randn(2, 3, 40, 56)
    _, everything = nano.forward_intermediates(x)
    chosen = nano.forward_intermediates(x, indices=[1, -1], intermediates_only=True)
    assert [m.shape for m in chosen] == [everything[1].shape, everything[3].shape]
    assert [m.shape for m in nano.forward_intermediates(x, indices=2, intermediates_only=True)] == [
        everything[2].shape, everything[3].shape]
    with pytest.raises(ValueError, match="stage_norms=True"):
        nano.forward_intermediates(x, norm=True)
    dense = create_model("gspn_nano", num_classes=0, stage_norms=True).eval()
    dense.load_state_dict(nano.state_dict(), strict=False)
    for norm in dense.stage_norms:
        torch.nn.init.normal_(norm.weight)
    normed = dense.forward_intermediates(x, norm=True, intermediates_only=True)
    for i, (raw, out) in enumerate(zip(everything, normed)):
        assert torch.allclose(out, dense.stage_norms[i](raw), atol=1e-6)
        assert not torch.allclose(out, raw)
    channels_last = nano.forward_intermediates(x, output_fmt="NHWC", intermediates_only=True)
    assert all(torch.equal(a.permute(0, 3, 1, 2), b) for a, b in zip(channels_last, everything))
    with pytest.raises(ValueError, match="indices must select stages 0-3"):
        nano.forward_intermediates(x, indices=[4])
    with pytest.raises(ValueError, match="output_fmt"):
        nano.forward_intermediates(x, output_fmt="NLC")


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 32)])
def test_a_wrong_input_shape_names_the_expected_one(nano, shape):
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 3, height, width\), got"):
        nano(torch.randn(*shape))


def test_an_empty_batch_gives_an_empty_result(nano):
    assert nano(torch.randn(0, 3, 32, 40)).shape == (0, 10)
    assert [m.shape[0] for m in nano.forward_intermediates(torch.randn(0, 3, 32, 40), intermediates_only=True)] == [0] * 4


def test_head_and_reset_classifier():
    model = create_model("gspn_nano", num_classes=10)
    x = torch.randn(2, 3, 40, 36)
    features = model.forward_features(x)
    assert model(x).shape == (2, 10)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    assert model.get_classifier() is model.head.fc and model.get_classifier().out_features == 10
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
