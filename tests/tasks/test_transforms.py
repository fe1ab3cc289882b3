"""The shared image pipelines (tasks/transforms.py): the evaluation pipeline and normalisation."""

import pytest
import torch

from gspn.tasks.transforms import Pipeline, eval_pipeline, normalize


def gradient_image(height: int = 40, width: int = 40) -> torch.Tensor:
    x = torch.linspace(0, 1, width).expand(height, width)
    return torch.stack([x, x.flip(-1), torch.full_like(x, 0.5)])


@pytest.mark.parametrize("size", [(50, 80), (80, 50), (33, 33)])
def test_eval_pipeline_resizes_the_short_side_and_centre_crops(size):
    out = eval_pipeline(32, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))(gradient_image(*size))
    assert out.shape == (3, 32, 32)
    if size[0] > size[1]:  # tall: the full width survives
        assert out[0, :, 0].mean() < 0.05 and out[0, :, -1].mean() > 0.95


def test_normalisation_maps_the_given_mean_and_std_to_zero_and_one():
    image = gradient_image()
    signed = Pipeline(normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))(image)
    assert signed.shape == image.shape and torch.allclose(signed, image * 2 - 1, atol=1e-6)
