"""Sample quality: FID and KID (torchmetrics) on the pooled features of a GSPN classifier checkpoint,
or on Inception features where torch-fidelity is importable; the class accuracy of conditional
samples under that classifier; and the real-versus-real FID of two disjoint real splits.

Every image given here is in [0, 1]. A classifier trained at one size judges images of any size:
`image_size` resizes them (antialiased) to it first, samples and real images alike.
"""

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gspn.errors import ConfigError

from ..backbones import backbone_from_checkpoint

FEATURES = ("classifier", "inception")


class ClassifierFeatures(nn.Module):
    """A frozen GSPN classifier: `forward` gives the pooled features (torchmetrics' feature extractor
    API), `logits` the class scores; both normalise [0, 1] images as the classifier was trained, after
    resizing them to `image_size` when given."""

    def __init__(self, classifier: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 image_size: int | None = None):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.image_size = image_size
        self.num_features = classifier.num_features
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def pooled(self, images: Tensor) -> Tensor:
        if self.image_size is not None and images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        return self.classifier.forward_features((images.float() - self.mean) / self.std)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.forward_head(self.pooled(images), pre_logits=True)

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier.forward_head(self.pooled(images))


def load_classifier(path: str | Path, mean: tuple[float, ...], std: tuple[float, ...],
                    image_size: int | None = None) -> ClassifierFeatures:
    """The backbone of a classifier checkpoint (its averaged weights when trained with an EMA), rebuilt
    by the shared `backbone_from_checkpoint` (tasks/backbones.py) from the backbone, num_classes and
    backbone_args its hyper_parameters record. The network alone: building the task that trained it
    here would run inside the `gspn` command's construction of this task and take its arguments."""
    return ClassifierFeatures(backbone_from_checkpoint(path, "fid_classifier"), mean, std, image_size)


class SampleQuality(nn.Module):
    """FID, KID and the real-versus-real FID; class accuracy when a classifier is given.

    update_real(images, reference=False) feeds the real split the samples are compared with;
    reference=True feeds the disjoint real split of the baseline. update_fake(images, labels) feeds samples.
    With a classifier, `class_names` (one per label) adds the accuracy of each class's samples.
    """

    def __init__(self, features: str = "classifier", classifier: ClassifierFeatures | None = None,
                 kid_subset_size: int = 100, class_names: list[str] | None = None):
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        if features not in FEATURES:
            raise ConfigError(f"fid_features must be one of {FEATURES}, got {features!r}")
        if features == "inception":
            if importlib.util.find_spec("torch_fidelity") is None:
                raise ImportError("fid_features: inception needs torch-fidelity; use fid_features: classifier "
                                  "with fid_classifier: <classification checkpoint>")
            extractor = 2048
        else:
            if classifier is None:
                raise ConfigError("fid_features: classifier needs fid_classifier: <classification checkpoint>")
            extractor = classifier
        self.classifier = classifier
        self.class_names = class_names
        self.kid_subset_size = kid_subset_size
        self.fid = FrechetInceptionDistance(feature=extractor, normalize=True)
        self.baseline = FrechetInceptionDistance(feature=extractor, normalize=True)
        self.kid = KernelInceptionDistance(feature=extractor, normalize=True, subset_size=kid_subset_size)
        self.reset_counts()

    def reset_counts(self) -> None:
        self.correct = self.total = self.real_correct = self.real_total = 0
        self.class_correct: dict[int, int] = {}
        self.class_total: dict[int, int] = {}

    def reset(self) -> None:
        for metric in (self.fid, self.baseline, self.kid):
            metric.reset()
        self.reset_counts()

    @torch.no_grad()
    def update_real(self, images: Tensor, labels: Tensor, reference: bool = False) -> None:
        if reference:
            self.baseline.update(images, real=False)
            return
        self.fid.update(images, real=True)
        self.baseline.update(images, real=True)
        self.kid.update(images, real=True)
        if self.classifier is not None:
            self.real_correct += int((self.classifier.logits(images).argmax(1) == labels).sum())
            self.real_total += len(labels)

    @torch.no_grad()
    def update_fake(self, images: Tensor, labels: Tensor) -> None:
        self.fid.update(images, real=False)
        self.kid.update(images, real=False)
        if self.classifier is not None:
            right = self.classifier.logits(images).argmax(1) == labels
            self.correct += int(right.sum())
            self.total += len(labels)
            for label, hit in zip(labels.tolist(), right.tolist()):
                self.class_correct[label] = self.class_correct.get(label, 0) + hit
                self.class_total[label] = self.class_total.get(label, 0) + 1

    def compute(self, seed: int = 0) -> dict[str, float]:
        """fid, kid, fid_real_vs_real (when the reference split was given), class_acc and real_class_acc
        (with a classifier), and class_acc/<name> per class given `class_names`. KID's random subsets
        are drawn from `seed`, not from the global generator,
        so the same features give the same KID wherever this runs (inside training or not)."""
        results = {"fid": float(self.fid.compute())}
        if self.baseline.fake_features_num_samples > 1:
            results["fid_real_vs_real"] = float(self.baseline.compute())
        subset = min(self.kid_subset_size, int(self.fid.real_features_num_samples),
                     int(self.fid.fake_features_num_samples))
        self.kid.subset_size = subset
        with torch.random.fork_rng(devices=[]):  # torchmetrics draws the subsets with torch.randperm
            torch.manual_seed(seed)
            results["kid"] = float(self.kid.compute()[0])
        if self.total:
            results["class_acc"] = self.correct / self.total
            for label, total in sorted(self.class_total.items()):
                if self.class_names is not None and label < len(self.class_names):
                    results[f"class_acc/{self.class_names[label]}"] = self.class_correct[label] / total
        if self.real_total:
            results["real_class_acc"] = self.real_correct / self.real_total
        return results
