"""ONNX export (gspn/ops/onnx.py, gspn.tasks.export.save_onnx): onnxruntime against PyTorch.

The op translations are compared with the ops' reference backend (their definition), the exported
models with the models in PyTorch, all in float32 to rtol 1e-4, atol 1e-5. Every graph is exported at
one size and run at others: odd, non-square, other batch sizes.
"""

import pytest
import torch
from torch import nn
from torch.export import Dim

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra: pip install 'gspn[onnx]'")
pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra: pip install 'gspn[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra: pip install 'gspn[onnx]'")

from gspn.errors import ConfigError  # noqa: E402
from gspn.models import create_model  # noqa: E402
from gspn.ops import DIRECTIONS, mixer_propagate, propagate  # noqa: E402
from gspn.ops.onnx import export  # noqa: E402
from gspn.tasks.export import save_onnx  # noqa: E402

TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def run_onnx(path, *inputs: torch.Tensor) -> list[torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs, strict=True)}
    return [torch.from_numpy(out) for out in session.run(None, feed)]


def assert_matches(model: nn.Module, path, *inputs: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model(*inputs)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    for actual, wanted in zip(run_onnx(path, *inputs), expected, strict=True):
        torch.testing.assert_close(actual, wanted, **TOLERANCE)


class Ops(nn.Module):
    """`propagate` in every direction, global and in chunks of 3 (G = 2 groups of 2 channels), and the
    mixer op as the models call it: GSPN-1 (groups = C, proj, chunk 2; here keeping its states, as
    configure_mixers(save_states=True) makes it) and GSPN-2 (groups 1, no skip)."""

    def forward(self, x, lam, a, b, c, z, proj, params, merge):
        scans = [propagate(x, lam, a, b, c, direction=direction, chunk=chunk, backend="reference")
                 for direction in DIRECTIONS for chunk in (None, 3)]
        gspn1 = mixer_propagate(x, z, merge, groups=x.shape[1], proj=proj, chunk=2, save_states=True,
                                backend="reference")
        gspn2 = mixer_propagate(x, params, merge, groups=1, skip=False, backend="reference")
        return (*scans, gspn1, gspn2)


def op_inputs(batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    C, G, R = 4, 2, 3
    weights = [torch.rand(batch, G, height, width) * 0.4 for _ in range(3)]
    return (torch.randn(batch, C, height, width), torch.randn(batch, C, height, width), *weights,
            torch.randn(batch, R, height, width), torch.randn(4 * (6 * C), R) * 0.5,
            torch.randn(batch, 4 * (3 + 2 * C), height, width), torch.randn(4))


def test_the_op_translations_match_the_reference_at_any_size(tmp_path):
    torch.manual_seed(0)
    batch, height, width = Dim("batch"), Dim("height"), Dim("width")
    image = {0: batch, 2: height, 3: width}
    path = tmp_path / "ops.onnx"
    export(Ops(), op_inputs(2, 7, 9), path, dynamic_shapes=(image,) * 6 + (None, image, None))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    for size in [(2, 7, 9), (1, 10, 6), (3, 2, 13)]:
        assert_matches(Ops(), path, *op_inputs(*size))


def perturbed(model: nn.Module) -> nn.Module:
    """Weights off their initial values (zero-initialised gates, unit norms), in eval mode."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


# ONNX's graph optimisation (seconds on a small CPU) runs on the first backbone only
@pytest.mark.parametrize("name, args, optimize", [
    ("gspn_nano", dict(dims=8, depths=(1, 1, 1, 1), d_state=2), True),  # GSPN-1: chunks of 2, then global
    ("gspn2_t", dict(dims=8, depths=(1, 1, 1, 1)), False),  # GSPN-2: compact, local perception unit
])
def test_backbones_run_in_onnxruntime_at_other_sizes(name, args, optimize, tmp_path):
    torch.manual_seed(0)
    model = perturbed(create_model(name, num_classes=5, **args))
    path = save_onnx(model, tmp_path, optimize=optimize)  # exported at batch 2, 64 x 96
    for size in [(1, 3, 37, 53), (3, 3, 61, 33)]:
        assert_matches(model, path, torch.randn(*size))
    # torch.export's dynamic height and width start at 33; the ONNX graph has no such bound
    assert_matches(model, path, torch.randn(2, 3, 32, 32))


@pytest.fixture(scope="module")
def segmentor():
    pytest.importorskip("mmseg", reason="the segmentor needs the seg extra: pip install 'gspn[seg]'")
    from tests.tasks.segmentation.conftest import tiny_task

    torch.manual_seed(0)
    return perturbed(tiny_task().model)  # mmseg's EncoderDecoder: UPerHead logits at stride 4


def test_a_segmentor_runs_in_onnxruntime_at_its_export_size(segmentor, tmp_path):
    path = save_onnx(segmentor, tmp_path, image_size=(37, 53), optimize=False)
    for batch in (1, 3):
        assert_matches(segmentor, path, torch.randn(batch, 3, 37, 53))


def test_a_segmentor_needs_an_image_size(segmentor, tmp_path):
    with pytest.raises(ConfigError, match=r"pools adaptively.*pass image_size=\(height, width\)"):
        save_onnx(segmentor, tmp_path)


def test_a_denoiser_runs_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = perturbed(create_model("gspn_denoiser_nano2", hidden=16, depth=2))
    path = save_onnx(model, tmp_path, optimize=False)  # exported at batch 2, 8 x 12
    assert_matches(model, path, torch.randn(1, 3, 38, 54), torch.tensor([640.0]), torch.tensor([8]))
    assert_matches(model, path, torch.randn(3, 3, 4, 6), torch.rand(3) * 1000, torch.tensor([0, 3, 7]))


def test_an_opset_below_18_is_refused():
    with pytest.raises(ValueError, match="`opset` must be at least 18, got 17"):
        export(Ops(), op_inputs(1, 3, 3), opset=17)
