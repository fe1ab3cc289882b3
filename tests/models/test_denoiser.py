"""The GSPN denoiser: presets at the paper's sizes, any resolution, conditioning, input checks."""

import pytest
import torch

from gspn.models import create_model, list_models
from gspn.models.denoiser import GSPNDenoiser

# Reported parameter counts in units of 2^20 (GSPN-B/2, L/2, XL/2; the official release's
# additive conditioning, whose blocks have no MLP: ours add one and size the MLP to match).
PAPER_PARAMS = {"b": 137, "l": 443, "xl": 690}


def count(name: str, **overrides) -> int:
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", PAPER_PARAMS)
def test_presets_match_the_papers_parameter_counts(size):
    params = count(f"gspn_denoiser_{size}2", conditioning="additive") / 2**20
    assert params == pytest.approx(PAPER_PARAMS[size], rel=0.05)
    # adaLN-Zero adds 6 * hidden^2 (+ 6 * hidden) per block and 2 * hidden^2 in the final layer.
    hidden, depth = {"b": (900, 30), "l": (1200, 56), "xl": (1500, 56)}[size]
    extra = count(f"gspn_denoiser_{size}2", conditioning="adaln") - params * 2**20
    assert extra == pytest.approx(depth * (6 * hidden**2 + 6 * hidden) + 2 * hidden**2 + 2 * hidden, rel=1e-3)


def test_every_size_has_patch_2_and_4():
    names = set(list_models("gspn_denoiser_*"))
    assert {f"gspn_denoiser_{size}{patch}" for size in ("xl", "l", "b", "s", "nano") for patch in (2, 4)} <= names
    assert create_model("gspn_denoiser_nano4").patch_size == 4


def test_every_block_scans_globally_with_four_directions_and_has_an_mlp():
    model = create_model("gspn_denoiser_nano2", depth=5)
    assert all(block.mixer.chunk is None for block in model.blocks)
    assert all(block.mlp is not None for block in model.blocks)
    # Long skips from blocks 0, 1 into blocks 4, 3; the middle block has none.
    assert [block.skip is not None for block in model.blocks] == [False, False, False, True, True]
    local = create_model("gspn_denoiser_nano2", depth=2, chunks=[4, None])
    assert [block.mixer.chunk for block in local.blocks] == [4, None]


@pytest.mark.parametrize("conditioning", ["adaln", "additive"])
def test_runs_at_other_resolutions_and_depends_on_time_and_class(conditioning):
    torch.manual_seed(0)
    model = create_model("gspn_denoiser_nano2", hidden=16, depth=2, conditioning=conditioning)
    # Zero-initialised outputs hide the conditioning: open them.
    for p in model.parameters():
        if p.abs().sum() == 0 and p.ndim > 1:
            torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 3, 24, 40)
    out = model(x, torch.tensor([10, 10]), torch.tensor([1, 1]))
    assert out.shape == x.shape
    assert out.is_contiguous()  # channels-last inside, the usual layout outside (callers may .view it)
    assert not torch.allclose(out, model(x, torch.tensor([500, 500]), torch.tensor([1, 1])))
    assert not torch.allclose(out, model(x, torch.tensor([10, 10]), torch.tensor([2, 8])))


def test_adaln_zero_starts_at_zero_output():
    model = create_model("gspn_denoiser_nano2", hidden=16, depth=2)
    out = model(torch.randn(1, 3, 8, 8), torch.tensor([3]), torch.tensor([0]))
    assert torch.count_nonzero(out) == 0


def test_bad_inputs_are_clear_errors():
    model = create_model("gspn_denoiser_nano4", hidden=16, depth=2)
    with pytest.raises(ValueError, match="divisible by the patch size 4"):
        model(torch.randn(1, 3, 18, 16), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="class labels y are needed"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="conditioning must be one of"):
        GSPNDenoiser(16, 2, conditioning="cross")
    with pytest.raises(ValueError, match="one entry per block"):
        GSPNDenoiser(16, 2, chunks=[2])
    with pytest.raises(ValueError, match="mixer must be one of"):
        GSPNDenoiser(16, 2, mixer="conv")
    with pytest.raises(ValueError, match="hidden divisible by 4"):
        GSPNDenoiser(18, 2, mixer="attention", heads=2)


def test_the_attention_control_places_tokens_by_position_and_runs_at_any_size():
    torch.manual_seed(0)
    model = create_model("gspn_denoiser_nano2", hidden=16, depth=2, mixer="attention", heads=2)
    assert all(type(block.mixer).__name__ == "SelfAttention" for block in model.blocks)
    for p in model.parameters():
        if p.abs().sum() == 0 and p.ndim > 1:
            torch.nn.init.normal_(p, std=0.1)
    t, y = torch.tensor([10]), torch.tensor([1])
    # A constant input: without the position embedding every token would get the same output.
    out = model(torch.ones(1, 3, 8, 12), t, y)
    assert out.shape == (1, 3, 8, 12)
    patches = out.unfold(2, 2, 2).unfold(3, 2, 2)
    assert not torch.allclose(patches[..., 0, 0, :, :], patches[..., 1, 3, :, :])
    assert model(torch.randn(1, 3, 16, 6), t, y).shape == (1, 3, 16, 6)
