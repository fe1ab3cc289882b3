"""SyntheticShapes (tasks/shapes.py), the embedded data of the classification and generation tasks."""

import pytest
import torch

from gspn.tasks.shapes import CLASSES, SyntheticShapes


def test_synthetic_shapes_are_deterministic_per_seed():
    first, again, other = SyntheticShapes(16, seed=3), SyntheticShapes(16, seed=3), SyntheticShapes(16, seed=4)
    for index in (0, 5, 15):
        assert torch.equal(first[index][0], again[index][0])
        assert first[index][1] == again[index][1] == index % len(CLASSES)
        assert not torch.equal(first[index][0], other[index][0])


def test_synthetic_shapes_images():
    dataset = SyntheticShapes(8, image_size=24)
    image, label = dataset[3]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    with pytest.raises(IndexError):
        dataset[8]


def foreground_masks(dataset: SyntheticShapes, label: int, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(label)
    return torch.stack([getattr(dataset, CLASSES[label])(
        lambda low, high: low + (high - low) * torch.rand((), generator=generator).item()) for _ in range(count)])


def test_synthetic_classes_differ_in_layout():
    """The classes' average foreground masks are far apart: each class is its own image-wide layout."""
    dataset = SyntheticShapes(1, image_size=32)
    means = torch.stack([foreground_masks(dataset, label, 64).mean(0).flatten() for label in range(len(CLASSES))])
    distances = torch.cdist(means, means) + torch.eye(len(CLASSES)) * 1e9
    assert distances.min() > 1.0
