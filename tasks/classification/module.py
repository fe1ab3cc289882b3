"""ClassificationTask: image classification with a GSPN backbone (or any module with the same API)."""

import csv
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from gspn.errors import ConfigError
from gspn.models import Backbone, load_checkpoint

from ..backbones import create_backbone
from ..base import BaseTask
from ..figures import confusion_image, image_grid, log_image
from ..outputs import remove_outputs
from .mixup import MixupCutmix


MISTAKES = 16  # misclassified validation images drawn per validation


class ClassificationTask(BaseTask):
    """Image classification with a GSPN backbone (or any network with the same API).

    From a checkpoint: the whole task with `ClassificationTask.load_from_checkpoint(path)`; the network
    alone (a preset backbone), from any task, with `gspn.tasks.backbones.backbone_from_checkpoint(path,
    owner)`, which reads the backbone, num_classes and backbone_args recorded here.

    Args:
        backbone: a preset of gspn.models (e.g. gspn_t; see gspn.models.list_models()) or a module
            (a class_path in YAML, e.g. gspn.models.GSPNBackbone) with the backbone API
            (gspn.models.Backbone); a module's classifier is reset to num_classes.
        backbone_args: overrides of the preset (dims, depths, drop_path_rate, ...).
        num_classes: the number of classes; the `gspn` command links it from the data module.
        pretrained: a checkpoint file for the backbone (the averaged weights when it was trained with
            an EMA); tensors whose shape differs (another classifier) are skipped and reported, and a
            file of which no tensor fits (another architecture) is an error.
        label_smoothing: of the training targets.
        mixup_alpha: the Beta parameter of batch-level mixup (0 disables it).
        cutmix_alpha: the Beta parameter of batch-level cutmix (0 disables it).
        mixup_prob: probability of mixing a batch.
        mixup_switch_prob: probability of cutmix rather than mixup when both are on.
        grad_checkpointing: recompute the blocks' activations in the backward pass to save memory.
        top_k: how many classes `gspn predict` writes per image.
        **kwargs: optimisation and EMA settings of BaseTask (lr, lr_batch_size, weight_decay, ...).
    """

    monitor = "val_acc1"
    monitor_mode = "max"
    data_links = ("num_classes",)

    def __init__(self, backbone: str | Backbone = "gspn_nano", backbone_args: dict | None = None,
                 num_classes: int | None = None, pretrained: str | None = None, label_smoothing: float = 0.0,
                 mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, mixup_prob: float = 1.0,
                 mixup_switch_prob: float = 0.5, grad_checkpointing: bool = False, top_k: int = 5, **kwargs):
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        hp = self.hparams
        if isinstance(hp.backbone, str):
            self.model = create_backbone(hp.backbone, hp.num_classes, hp.backbone_args)
        else:
            if hp.backbone_args:
                raise ConfigError("ClassificationTask: backbone_args apply to a preset name; give a module's "
                                  "arguments in its own init_args")
            self.model = hp.backbone
            if self.model.num_classes != hp.num_classes:
                self.model.reset_classifier(hp.num_classes)
        if hp.pretrained:
            load_checkpoint(self.model, hp.pretrained)
        self.model.set_grad_checkpointing(hp.grad_checkpointing)

    def configure_losses(self) -> None:
        hp = self.hparams
        self.mix = MixupCutmix(hp.num_classes, hp.mixup_alpha, hp.cutmix_alpha, hp.mixup_prob, hp.mixup_switch_prob,
                               hp.label_smoothing)

    def configure_metrics(self) -> None:
        classes = self.hparams.num_classes
        metrics = MetricCollection({
            "acc1": MulticlassAccuracy(classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(classes, top_k=min(5, classes), average="micro"),
        })
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.confusion = MulticlassConfusionMatrix(classes)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        mixed, targets = self.mix(images, labels)
        logits = self(mixed)
        loss = F.cross_entropy(logits, targets)
        self.log("train_loss", loss, prog_bar=True)
        self.train_metrics(logits, labels)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}_loss", F.cross_entropy(logits, labels), sync_dist=True)
        metrics(logits, labels)
        self.log_dict(metrics, prog_bar=True)
        return logits

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        logits = self.evaluate(batch, "val", self.val_metrics)
        images, labels = batch
        predictions = logits.argmax(dim=-1)
        self.confusion.update(predictions, labels)
        wrong = (predictions != labels).nonzero().flatten()[:MISTAKES - len(self.mistakes)]
        self.mistakes.extend(images[wrong].cpu())

    def on_validation_epoch_start(self) -> None:
        self.confusion.reset()
        self.mistakes: list[Tensor] = []

    def on_validation_epoch_end(self) -> None:
        """The confusion matrix and the first misclassified images as pictures (tasks/figures.py)."""
        matrix = self.confusion.compute()
        if not self.trainer.sanity_checking:
            log_image(self, "confusion_matrix", confusion_image(matrix))
            if self.mistakes:
                images = torch.stack(self.mistakes)
                shown = (images - images.amin()) / (images.amax() - images.amin()).clamp_min(1e-8)
                log_image(self, "misclassified", image_grid(shown, min(len(shown), 8)))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, list | Tensor], batch_idx: int) -> dict:
        """Top-k classes and probabilities per image, with the image's file (or its index in the split)."""
        images, sources = batch
        probabilities = self(images).softmax(dim=-1)
        top = probabilities.topk(min(self.hparams.top_k, probabilities.shape[-1]), dim=-1)
        if isinstance(sources, Tensor):  # labelled split: no file names, so the sample's position
            sources = [f"#{batch_idx * images.shape[0] + i}" for i in range(images.shape[0])]
        return {"source": list(sources), "classes": top.indices.cpu(), "probabilities": top.values.cpu(),
                "all_probabilities": probabilities.cpu()}

    def start_prediction(self, output_dir: Path) -> None:
        """Remove the predictions file of an earlier `gspn predict`."""
        remove_outputs(output_dir, "predictions.csv")

    def write_prediction(self, prediction: dict, output_dir: Path) -> None:
        """Appends to predictions.csv (`gspn predict` runs in one process): the input, then top-k class
        names and probabilities."""
        names = getattr(self.trainer.datamodule, "classes", None)
        path = output_dir / "predictions.csv"
        k = prediction["classes"].shape[1]
        new = not path.exists() or self.trainer.predict_loop.batch_progress.current.completed == 0
        with path.open("w" if new else "a", newline="") as file:
            writer = csv.writer(file)
            if new:
                writer.writerow(["input"] + [f"{kind}{i + 1}" for i in range(k) for kind in ("class", "prob")])
            for source, classes, probabilities in zip(prediction["source"], prediction["classes"],
                                                      prediction["probabilities"]):
                row = [source]
                for index, probability in zip(classes.tolist(), probabilities.tolist()):
                    row += [names[index] if names else index, f"{probability:.6f}"]
                writer.writerow(row)
