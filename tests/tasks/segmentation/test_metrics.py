"""mIoU over a whole split against a confusion matrix counted by hand."""

import math

import torch

from .conftest import tiny_task


def test_miou_and_pixel_accuracy_against_a_hand_computed_confusion_matrix():
    # 5 classes; class 3 appears in neither prediction nor target (left out of the mean), class 4 only
    # in the prediction (IoU 0, counted); 255 pixels are ignored whatever is predicted there.
    target_1 = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred_1 = torch.tensor([[0, 1, 1, 1], [2, 4, 0, 3]])
    target_2 = torch.tensor([[0, 1, 2, 255]])
    pred_2 = torch.tensor([[0, 1, 1, 2]])
    # Counted over the two batches without the 255 pixels: rows target, columns prediction.
    confusion = torch.zeros(5, 5)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 4), (0, 0), (1, 1), (2, 1)]:
        confusion[t, p] += 1
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    expected_miou = (tp[present] / union[present]).mean().item()
    expected_acc = (tp.sum() / confusion.sum()).item()
    # By hand: IoU 0 = 2/3, 1 = 3/5, 2 = 1/3, 3 absent, 4 = 0 -> (2/3 + 3/5 + 1/3 + 0) / 4.
    assert math.isclose(expected_miou, (2 / 3 + 3 / 5 + 1 / 3 + 0) / 4, rel_tol=1e-6)

    task = tiny_task()
    metrics = task.val_metrics
    metrics.update(pred_1[None], target_1[None])
    metrics.update(pred_2[None], target_2[None])
    values = metrics.compute()
    assert math.isclose(values["val_mIoU"].item(), expected_miou, rel_tol=1e-6)
    assert math.isclose(values["val_aAcc"].item(), expected_acc, rel_tol=1e-6)
    # Not the mean of the two batches' mIoU.
    first, second = task.test_metrics.clone(), task.test_metrics.clone()
    first.update(pred_1[None], target_1[None])
    second.update(pred_2[None], target_2[None])
    batch_mean = (first.compute()["test_mIoU"] + second.compute()["test_mIoU"]).item() / 2
    assert not math.isclose(batch_mean, expected_miou, rel_tol=1e-3)
