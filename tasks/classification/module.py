"""ClassificationTask: image classification with a GSPN backbone (or any module with the same API)."""

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from gspn.models import create_model, load_checkpoint

from ..base import BaseTask
from .mixup import MixupCutmix


def build_backbone(backbone: str | nn.Module, num_classes: int, backbone_args: dict | None,
                   pretrained: str | None) -> nn.Module:
    if isinstance(backbone, str):
        model = create_model(backbone, num_classes=num_classes, **(backbone_args or {}))
    else:
        if backbone_args:
            raise ValueError("ClassificationTask: backbone_args apply to a preset name; give a module's "
                             "arguments in its own init_args")
        model = backbone
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
    if pretrained:
        load_checkpoint(model, pretrained)
    return model


class ClassificationTask(BaseTask):
    """Args:
        backbone: a preset of gspn.models (e.g. gspn_t; see gspn.models.list_models()) or a module
            (a class_path in YAML) with the backbone API; a module's classifier is reset to num_classes.
        backbone_args: overrides of the preset (dims, depths, drop_path_rate, ...).
        num_classes: the `gspn` command links it from the data module.
        pretrained: a checkpoint file for the backbone; tensors whose shape differs (another
            classifier) are skipped and reported.
        label_smoothing: of the training targets.
        mixup_alpha, cutmix_alpha: Beta parameters of batch-level mixup and cutmix (0 disables).
        mixup_prob: probability of mixing a batch; mixup_switch_prob: of cutmix when both are on.
        grad_checkpointing: recompute the blocks' activations in the backward pass to save memory.
        **kwargs: optimisation and EMA settings of BaseTask (lr, lr_batch_size, weight_decay, ...).
    """

    monitor = "val_acc1"
    monitor_mode = "max"

    def __init__(self, backbone: str | nn.Module = "gspn_nano", backbone_args: dict | None = None,
                 num_classes: int = 1000, pretrained: str | None = None, label_smoothing: float = 0.0,
                 mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, mixup_prob: float = 1.0,
                 mixup_switch_prob: float = 0.5, grad_checkpointing: bool = False, **kwargs):
        model = build_backbone(backbone, num_classes, backbone_args, pretrained)
        model.set_grad_checkpointing(grad_checkpointing)
        super().__init__(model, **kwargs)
        self.num_classes = num_classes
        self.mix = MixupCutmix(num_classes, mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob, label_smoothing)
        metrics = MetricCollection({
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        })
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        mixed, targets = self.mix(images, labels)
        logits = self(mixed)
        loss = F.cross_entropy(logits, targets)
        self.log("train_loss", loss, prog_bar=True)
        self.train_metrics(logits, labels)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}_loss", F.cross_entropy(logits, labels), sync_dist=True)
        metrics(logits, labels)
        self.log_dict(metrics, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities, (B, num_classes)."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(images).softmax(dim=-1)
