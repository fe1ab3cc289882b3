"""load_checkpoint: plain and Lightning files, prefixes, and the report of what did not fit."""

import logging

import pytest
import torch

from gspn.errors import CheckpointError
from gspn.models import create_model, load_checkpoint, read_checkpoint


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("gspn_nano", num_classes=10).eval()


def _fresh(**overrides):
    torch.manual_seed(1)
    return create_model("gspn_nano", **{"num_classes": 10, **overrides}).eval()


def test_round_trip_of_a_plain_state_dict(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    other = _fresh()
    report = load_checkpoint(other, tmp_path / "plain.pt")
    assert report.clean and report.prefix == "" and len(report.loaded) == len(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(other(x), model(x))


@pytest.mark.parametrize("prefix", ["model.", "backbone.", "model.backbone."])
def test_lightning_checkpoint_prefix_is_stripped_and_extras_reported(model, tmp_path, prefix, caplog):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(3)
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"lr": 1e-3}}, tmp_path / "last.ckpt")
    other = _fresh()
    with caplog.at_level(logging.WARNING):
        report = load_checkpoint(other, tmp_path / "last.ckpt")
    assert report.prefix == prefix
    assert report.unexpected == ["criterion.weight"] and not report.missing and not report.mismatched
    assert "1 unexpected in the checkpoint: criterion.weight" in caplog.text
    torch.testing.assert_close(other.stem[0].weight, model.stem[0].weight)


def test_missing_and_mismatched_keys_are_reported_not_fatal(model, tmp_path):
    state = model.state_dict()
    del state["stem.0.bias"]
    torch.save({"model": state}, tmp_path / "partial.pth")
    other = _fresh(num_classes=5)
    report = load_checkpoint(other, tmp_path / "partial.pth")
    assert report.missing == ["stem.0.bias"]
    assert sorted(k for k, _, _ in report.mismatched) == ["head.fc.bias", "head.fc.weight"]
    assert ("head.fc.weight", (10, 128), (5, 128)) in report.mismatched
    torch.testing.assert_close(other.stem[0].weight, model.stem[0].weight)
    assert "shape mismatch, skipped: head.fc.weight: (10, 128) in file, (5, 128) in model" in str(report)


def test_strict_raises_with_the_report_and_loads_nothing(model, tmp_path):
    state = model.state_dict()
    state["extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    other = _fresh()
    before = other.stem[0].weight.clone()
    with pytest.raises(CheckpointError, match="1 unexpected in the checkpoint: extra"):
        load_checkpoint(other, tmp_path / "extra.pt", strict=True)
    torch.testing.assert_close(other.stem[0].weight, before)


def test_weights_of_another_architecture_are_an_error_not_a_fresh_start(model, tmp_path):
    denoiser = create_model("gspn_denoiser_nano4", num_classes=10, hidden=16, depth=2, d_state=2, mlp_ratio=1.0)
    torch.save({"state_dict": {f"model.{k}": v for k, v in denoiser.state_dict().items()}}, tmp_path / "other.ckpt")
    count = len(denoiser.state_dict())
    other = _fresh()
    before = other.stem[0].weight.clone()
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'other.ckpt'}: no tensor matches the model GSPNBackbone "
                                              rf"\(\d+ tensors; the file has {count} tensors, e\.g\. model\.[\w.]+, "
                                              r"model\.[\w.]+, model\.[\w.]+\): weights of another architecture"):
        load_checkpoint(other, tmp_path / "other.ckpt")
    torch.testing.assert_close(other.stem[0].weight, before)


def test_tensors_of_other_shapes_only_are_an_error(model, tmp_path):
    torch.save({"stem.0.weight": torch.zeros(1), "head.fc.bias": torch.zeros(3)}, tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError, match=r"the file has 2 tensors, e\.g\. stem\.0\.weight, head\.fc\.bias; "
                                              "2 by name but with another shape"):
        load_checkpoint(_fresh(), tmp_path / "shapes.pt")


class Payload:
    """Any object outside tensors and containers: loading it would run code from the file."""


@pytest.mark.parametrize("content, cause", [
    ({"weight": torch.ones(1), "extra": Payload()}, r"it holds a [\w.]+Payload, which is not loaded"),
    (b"not a torch file", "truncated or not a PyTorch checkpoint"),
])
def test_a_file_that_is_not_weights_only_is_a_checkpoint_error(content, cause, tmp_path):
    path = tmp_path / "file.pt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(CheckpointError, match=f"{path}: cannot read the checkpoint: {cause}"):
        read_checkpoint(path)
