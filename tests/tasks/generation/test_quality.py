"""The judge's view of samples: images resized to the size it was trained at, and accuracy per class."""

import torch
from torch import nn

from gspn.tasks.generation.quality import ClassifierFeatures, SampleQuality


class ColourJudge(nn.Module):
    """Class = the strongest of the first K channels' means; records the sizes it was given."""

    num_features = 3

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward_features(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return x.mean((2, 3))

    def forward_head(self, x, pre_logits=False):
        return x


def test_the_judge_sees_every_image_at_its_own_size():
    judge = ColourJudge()
    features = ClassifierFeatures(judge, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), image_size=8)
    image = torch.rand(2, 3, 1, 1).expand(2, 3, 16, 24)
    torch.testing.assert_close(features(image), image[:, :, 0, 0])  # a constant image stays itself
    features(torch.rand(1, 3, 8, 8))
    assert judge.sizes == [(8, 8), (8, 8)]
    ClassifierFeatures(judge, (0.0,) * 3, (1.0,) * 3)(torch.rand(1, 3, 16, 12))
    assert judge.sizes[-1] == (16, 12)


def test_accuracy_per_class_counts_each_class_on_its_own():
    quality = SampleQuality(classifier=ClassifierFeatures(ColourJudge(), (0.0,) * 3, (1.0,) * 3), kid_subset_size=2,
                            class_names=["red", "green", "blue"])
    colours = torch.eye(3)[:, :, None, None].expand(3, 3, 4, 4)
    real = torch.cat([colours, colours])
    quality.update_real(real, torch.tensor([0, 1, 2, 0, 1, 2]))
    # red: 2 of 2 right; green: 1 of 3; blue: 0 of 1
    fake = colours[torch.tensor([0, 0, 1, 0, 2, 0])]
    quality.update_fake(fake, torch.tensor([0, 0, 1, 1, 1, 2]))
    results = quality.compute()
    assert results["class_acc"] == 3 / 6
    assert (results["class_acc/red"], results["class_acc/green"], results["class_acc/blue"]) == (1.0, 1 / 3, 0.0)
    assert results["real_class_acc"] == 1.0
    quality.reset()
    quality.update_real(real, torch.tensor([0, 1, 2, 0, 1, 2]))
    quality.update_fake(colours[:2], torch.tensor([0, 0]))
    assert set(quality.compute()) & {"class_acc/green", "class_acc/blue"} == set()
