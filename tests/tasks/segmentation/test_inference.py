"""Inference at any image size: whole image, sliding window, rescaling and test-time augmentation."""

import pytest
import torch

from .conftest import tiny_task


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    return tiny_task().eval()


@pytest.mark.parametrize("size", [(37, 53), (61, 33), (45, 45)])
def test_whole_image_inference_at_odd_non_square_sizes(task, size):
    with torch.no_grad():
        probabilities = task(torch.rand(2, 3, *size))
    assert probabilities.shape == (2, 5, *size)
    assert torch.allclose(probabilities.sum(1), torch.ones(2, *size), atol=1e-5)


def test_one_sliding_window_covering_the_image_equals_whole_image(task):
    images = torch.rand(2, 3, 41, 58)
    with torch.no_grad():
        whole = task(images)
        task.set_inference("slide", crop_size=(64, 64), stride=(32, 32))
        try:
            slide = task(images)
        finally:
            task.set_inference("whole")
    assert torch.allclose(whole, slide, atol=1e-6)


def test_overlapping_windows_cover_the_image_and_differ_from_whole(task):
    images = torch.rand(1, 3, 41, 58)
    with torch.no_grad():
        whole = task(images)
        task.set_inference("slide", crop_size=(32, 32), stride=(16, 16))
        try:
            slide = task(images)
        finally:
            task.set_inference("whole")
    assert slide.shape == whole.shape
    assert torch.allclose(slide.sum(1), torch.ones(1, 41, 58), atol=1e-5)
    assert not torch.allclose(slide, whole, atol=1e-3)


def test_scale_and_tta_map_back_to_the_original_size():
    torch.manual_seed(0)
    task = tiny_task(test_scale=(96, 48), tta_ratios=[0.5, 1.0, 1.5], tta_flip=True).eval()
    with torch.no_grad():
        probabilities = task(torch.rand(1, 3, 35, 70))
    assert probabilities.shape == (1, 5, 35, 70)
    assert torch.allclose(probabilities.sum(1), torch.ones(1, 35, 70), atol=1e-5)


def test_scaled_size_keeps_the_aspect():
    from gspn.tasks.segmentation.segmentor import scaled_size

    assert scaled_size(512, 683, (2048, 512), 1.0) == (512, 683)
    assert scaled_size(256, 1024, (2048, 512), 1.0) == (512, 2048)
    assert scaled_size(300, 400, None, 0.5) == (150, 200)


def test_inference_mode_is_checked():
    with pytest.raises(ValueError, match="inference must be 'whole' or 'slide'"):
        tiny_task(inference="sliding")


def test_start_prediction_removes_the_pngs_of_an_earlier_run(task, tmp_path):
    for name in ("old.png", "old_overlay.png", "notes.txt"):
        (tmp_path / name).write_text("stale")
    task.start_prediction(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
