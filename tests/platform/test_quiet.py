"""The messages gspn silences (gspn/quiet.py) are noise for this project's models, and stay silenced."""

import warnings

import pytest
import torch

from gspn.models import create_model
from gspn.quiet import silence_unactionable


def layout_differences(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, list[int]]:
    """For each parameter whose gradient's strides differ from its own: the sizes of the dimensions
    where they differ. DDP warns about every such parameter."""
    loss.backward()
    found = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and parameter.grad.stride() != parameter.stride():
            found[name] = [size for size, a, b in zip(parameter.shape, parameter.stride(), parameter.grad.stride())
                           if a != b]
    return found


@pytest.mark.parametrize("family", ["gspn_nano", "gspn2_t", "denoiser"])
def test_gradient_strides_differ_from_the_weights_only_in_size_one_dimensions(family):
    """So DDP's "Grad strides do not match bucket view strides" changes nothing in memory for these models."""
    torch.manual_seed(0)
    if family == "denoiser":
        model = create_model("gspn_denoiser_nano4", in_chans=3, num_classes=3, hidden=32, depth=2)
        output = model(torch.randn(2, 3, 16, 16), torch.tensor([10, 500]), torch.tensor([0, 2]))
    else:
        small = {"dims": 16, "depths": [1, 1, 1, 1]} if family == "gspn2_t" else {}
        model = create_model(family, num_classes=4, **small)
        output = model(torch.randn(2, 3, 37, 29))
    differences = layout_differences(model, output.square().mean())
    assert differences, "no parameter's gradient differs in strides: the silenced warning may be gone, drop its filter"
    assert all(set(sizes) == {1} for sizes in differences.values()), differences


def test_the_filters_hide_those_messages_and_no_others():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_unactionable()
        warnings.warn("Grad strides do not match bucket view strides. This may ...", UserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("Grad strides are something a user should see", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["Grad strides are something a user should see"]


def test_building_a_segmentor_warns_nothing():
    from tests.tasks.segmentation.conftest import tiny_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_task()
    assert not [w for w in caught if "build_loss" in str(w.message)]
