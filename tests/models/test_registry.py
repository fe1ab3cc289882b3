"""Presets: names, overrides, parameter counts of the official configs, MACs of GSPN-T."""

import pytest
import torch

from gspn.models import count_macs, count_params, create_model, list_models, register_model
from gspn.models.presets import official_chunks

PRESET_PARAMS = {  # millions, at 1000 classes; tolerance
    "gspn_t": (31.5, 0.03), "gspn_s": (50.8, 0.03), "gspn_b": (93.1, 0.03),
    "gspn2_t": (24.0, 0.10), "gspn2_s": (50.0, 0.10), "gspn2_b": (89.0, 0.10),
}


def on_meta(name, **overrides):
    """Build without allocating or initialising real memory: counting only."""
    with torch.device("meta"):
        return create_model(name, **overrides)


@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_preset_parameter_counts(name):
    expected, tolerance = PRESET_PARAMS[name]
    params = count_params(on_meta(name)) / 1e6
    assert abs(params - expected) <= tolerance * expected, f"{name}: {params:.2f}M, expected {expected}M"


def test_gspn_t_macs_match_the_paper():
    macs = count_macs(on_meta("gspn_t"), (3, 224, 224)) / 1e9
    assert abs(macs - 5.3) <= 0.1 * 5.3, f"{macs:.2f} GMACs"


def test_official_chunk_placement():
    assert official_chunks((2, 2, 7, 2), (2, 3)) == [[2, 2], [2, 2], [None] * 7, [None, None]]
    assert official_chunks((4, 4, 15, 4), (2, 3))[2] == [None] * 7 + [2] * 6 + [None, 2]
    model = on_meta("gspn_s")
    chunks = [[block.mixer.chunk for block in stage.blocks] for stage in model.stages]
    assert chunks == [[2] * 5, [2] * 5, [2] * 10, [None, None]]


def test_list_create_and_override():
    assert {"gspn_t", "gspn_s", "gspn_b", "gspn2_t", "gspn2_s", "gspn2_b", "gspn_nano"} <= set(list_models())
    assert list_models("gspn2_*") == ["gspn2_b", "gspn2_s", "gspn2_t"]
    model = create_model("gspn_nano", num_classes=7, depths=(1, 1, 1, 1))
    assert model.num_classes == 7 and [len(s.blocks) for s in model.stages] == [1, 1, 1, 1]
    assert [s.blocks[0].mixer.chunk for s in model.stages] == [2, 2, None, None]
    with pytest.raises(ValueError, match="unknown model 'gspn_xl'; available: .*gspn_t"):
        create_model("gspn_xl")


def test_register_model_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        @register_model
        def gspn_t():
            pass


def small_instance(name: str) -> tuple[torch.nn.Module, tuple]:
    """The preset at its own width but shallow, with inputs of a small size for its kind."""
    from gspn.models import GSPNBackbone

    with torch.device("meta"):
        kind = type(create_model(name))
    if issubclass(kind, GSPNBackbone):
        return create_model(name, depths=(1, 1, 1, 1), num_classes=5), (torch.randn(2, 3, 36, 44),)
    model = create_model(name, depth=2)
    x = torch.randn(2, model.in_chans, 8, 8)
    return model, (x, torch.tensor([3, 700]), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model, inputs = small_instance(name)
    out = model(*inputs)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    unused = [n for n, g in grads.items() if g is None]
    assert not unused, f"{name}: no gradient for {unused[:5]}"


def test_a_name_of_another_family_is_refused_with_the_family_listed():
    assert "gspn_denoiser_nano4" in list_models(family="denoiser")
    assert not set(list_models(family="denoiser")) & set(list_models(family="backbone"))
    with pytest.raises(ValueError, match=r"unknown backbone model 'gspn_denoiser_nano4' \(a denoiser, not a "
                                         r"backbone\); available: .*gspn_t") as error:
        create_model("gspn_denoiser_nano4", "backbone")
    assert "gspn_denoiser" not in str(error.value).split("available:")[1]
    assert create_model("gspn_denoiser_nano4", "denoiser", depth=1).patch_size == 4
