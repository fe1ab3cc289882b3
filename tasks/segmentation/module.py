"""SegmentationTask: UPerNet (mmsegmentation's UPerHead and auxiliary FCNHead) on a GSPN backbone."""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from gspn.errors import ConfigError

from ..base import BaseTask
from ..figures import image_grid, log_image
from ..outputs import remove_outputs, safe_name
from .backbone import GSPNSegBackbone
from .outputs import check_palette, save_label_png, save_overlay_png
from .segmentor import IGNORE_INDEX, build_segmentor, check_batch_norm_batch, data_samples, segment, upernet_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


SHOWN = 4  # validation images drawn per validation (image, ground truth, prediction)
PANEL_HEIGHT = 128


def overlay_panel(image: Tensor, mode: str = "bilinear") -> Tensor:
    """A (3, H, W) picture at PANEL_HEIGHT pixels high, its aspect kept."""
    height, width = image.shape[-2:]
    size = (PANEL_HEIGHT, max(1, round(width * PANEL_HEIGHT / height)))
    return F.interpolate(image[None].float().cpu(), size=size, mode=mode)[0].clamp(0, 1)


class SegmentationTask(BaseTask):
    """Semantic segmentation: UPerNet (UPerHead and an auxiliary FCNHead) on a GSPN backbone.

    Args:
        backbone: a preset of gspn.models (gspn_t, gspn2_t, gspn_nano, ...) or a dotted class path of a
            network with the backbone API (forward_intermediates, feature_info).
        backbone_args: the backbone's arguments (drop_path_rate, dims, depths, chunks, ...).
        num_classes: the number of classes; the `gspn` command takes it from the data module.
        class_names: one name per class; the `gspn` command takes them from the data module.
        palette: an [r, g, b] per class, for the PNGs of `gspn predict`; the `gspn` command takes it
            from the data module.
        pretrained: a classification checkpoint for the backbone (a run's state_dict holds its EMA
            weights when it kept one); missing and unexpected keys are reported, and a file of which
            no tensor fits (another architecture) is an error.
        decode_channels: UPerHead's width.
        pool_scales: UPerHead's pyramid pooling scales.
        dropout: UPerHead's dropout.
        aux_channels: the width of the auxiliary FCNHead on stage 3.
        aux_weight: the loss weight of the auxiliary FCNHead (0 removes it).
        inference: "whole" (the image at its own size, no padding) or "slide" (windows of crop_size
            every stride pixels, overlapping logits averaged).
        crop_size: [height, width] of the windows of "slide" inference.
        stride: [height, width] pixels between the windows of "slide" inference.
        test_scale: [long edge, short edge] the evaluation images are resized to keeping their
            aspect (predictions are mapped back to the original size); None keeps the size.
        tta_ratios: test-time augmentation scales, e.g. [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]: softmax
            averaged over the rescaled views (and their mirror images with tta_flip).
        tta_flip: test-time augmentation by mirroring: softmax averaged over the mirrored views too.
        mean: input normalisation of images in [0, 1], the mean (ImageNet's, as the backbones were trained).
        std: input normalisation of images in [0, 1], the std (ImageNet's, as the backbones were trained).
        overlay_alpha: opacity of the coloured mask in the overlay PNGs of `gspn predict`.
        **kwargs: BaseTask's optimisation settings (lr, weight_decay, schedule="poly", warmup_steps, ...).
    """

    monitor = "val_mIoU"
    monitor_mode = "max"
    data_links = ("num_classes", "class_names", "palette")

    def __init__(self, backbone: str = "gspn_nano", backbone_args: dict | None = None, num_classes: int | None = None,
                 class_names: list[str] | None = None, palette: list[list[int]] | None = None,
                 pretrained: str | None = None, decode_channels: int = 512, pool_scales: Sequence[int] = (1, 2, 3, 6),
                 dropout: float = 0.1, aux_channels: int = 256, aux_weight: float = 0.4,
                 inference: Literal["whole", "slide"] = "whole",
                 crop_size: tuple[int, int] = (512, 512), stride: tuple[int, int] = (341, 341),
                 test_scale: tuple[int, int] | None = None, tta_ratios: list[float] | None = None,
                 tta_flip: bool = False, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 overlay_alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)

    def check_arguments(self) -> None:
        super().check_arguments()
        hp, name = self.hparams, type(self).__name__
        if hp.inference not in ("whole", "slide"):
            raise ConfigError(f"{name}: inference must be 'whole' or 'slide', got {hp.inference!r}")
        if len(hp.class_names) != hp.num_classes:
            raise ConfigError(f"{name}: {len(hp.class_names)} class_names for num_classes {hp.num_classes}")
        check_palette(hp.palette, hp.num_classes, name)

    def configure_models(self) -> None:
        hp = self.hparams
        backbone = dict(type=GSPNSegBackbone.registry_name, arch=hp.backbone, **(hp.backbone_args or {}))
        with torch.device("meta"):  # only to read the stage widths
            channels = GSPNSegBackbone(**{k: v for k, v in backbone.items() if k != "type"}).channels
        config = upernet_config(hp.num_classes, {**backbone, "pretrained": hp.pretrained}, channels,
                                decode_channels=hp.decode_channels, pool_scales=hp.pool_scales, dropout=hp.dropout,
                                aux_channels=hp.aux_channels, aux_weight=hp.aux_weight)
        self.model = build_segmentor(config)
        self.set_inference(hp.inference, hp.crop_size, hp.stride)
        if self.model.backbone.load_report is not None:
            rank_zero_info(f"pretrained backbone {hp.pretrained}: {self.model.backbone.load_report}")

    def set_inference(self, mode: str, crop_size: Sequence[int] | None = None, stride: Sequence[int] | None = None) -> None:
        """Switch between whole-image and sliding-window inference."""
        from mmengine.config import ConfigDict

        self.model.test_cfg = ConfigDict(mode=mode) if mode == "whole" else \
            ConfigDict(mode=mode, crop_size=tuple(crop_size), stride=tuple(stride))

    def configure_metrics(self) -> None:
        n = self.hparams.num_classes
        # Macro IoU leaves out classes absent from both prediction and target, as mmseg's mIoU does.
        metrics = MetricCollection({"mIoU": MulticlassJaccardIndex(n, average="macro", ignore_index=IGNORE_INDEX),
                                    "aAcc": MulticlassAccuracy(n, average="micro", ignore_index=IGNORE_INDEX)})
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.val_class_iou = MulticlassJaccardIndex(n, average="none", ignore_index=IGNORE_INDEX)
        self.test_class_iou = MulticlassJaccardIndex(n, average="none", ignore_index=IGNORE_INDEX)

    def normalize(self, images: Tensor) -> Tensor:
        mean = images.new_tensor(self.hparams.mean).view(1, -1, 1, 1)
        std = images.new_tensor(self.hparams.std).view(1, -1, 1, 1)
        return (images - mean) / std

    def forward(self, images: Tensor, out_size: Sequence[int] | None = None) -> Tensor:
        """Class probabilities (B, num_classes, *out_size) of images in [0, 1] (out_size: their own size)."""
        hp = self.hparams
        return segment(self.model, self.normalize(images), out_size or images.shape[-2:], hp.test_scale,
                       hp.tta_ratios or (1.0,), hp.tta_flip)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        synced = any(isinstance(module, torch.nn.SyncBatchNorm) for module in self.modules())
        batch_size = getattr(self.trainer.datamodule, "batch_size", None)
        if batch_size is not None and not synced:
            check_batch_norm_batch(batch_size, type(self).__name__)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        losses = self.model.loss(self.normalize(images), data_samples(labels))
        terms = {key.replace(".loss_ce", "_loss"): value for key, value in losses.items() if "loss" in key}
        loss = sum(terms.values())
        self.log("train_loss", loss, prog_bar=True)
        self.log_dict({f"train_{key}": value for key, value in terms.items()})
        return loss

    def evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        images, labels = batch
        probabilities = self(images, labels.shape[-2:])
        loss = F.nll_loss(probabilities.clamp_min(1e-8).log(), labels, ignore_index=IGNORE_INDEX)
        self.log(f"{stage}_loss", loss, sync_dist=True)
        predictions = probabilities.argmax(dim=1)
        metrics.update(predictions, labels)
        self.log_dict(metrics, prog_bar=True)
        return predictions

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        predictions = self.evaluate(batch, "val", self.val_metrics)
        self.val_class_iou.update(predictions, batch[1])
        for image, labels, predicted in zip(*batch, predictions):
            if len(self.shown) < SHOWN:
                self.shown.append([overlay_panel(image), self.colour(labels), self.colour(predicted)])

    def on_validation_epoch_start(self) -> None:
        self.shown: list[list[Tensor]] = []

    def on_validation_epoch_end(self) -> None:
        """The per-class IoU (val_IoU/<class>) and, as a picture (tasks/figures.py), image, ground truth and
        prediction of the first validation images."""
        self.class_iou("val", self.val_class_iou)
        if not self.trainer.sanity_checking and self.shown:
            width = max(panel.shape[-1] for row in self.shown for panel in row)
            panels = [F.pad(panel, (0, width - panel.shape[-1]), value=1.0) for row in self.shown for panel in row]
            log_image(self, "overlays", image_grid(torch.stack(panels), 3))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        predictions = self.evaluate(batch, "test", self.test_metrics)
        self.test_class_iou.update(predictions, batch[1])

    def on_test_epoch_end(self) -> None:
        ious = self.class_iou("test", self.test_class_iou)
        width = max(len(name) for name in self.hparams.class_names)
        rows = "\n".join(f"{name:<{width}}  {100 * iou:6.2f}" for name, iou in zip(self.hparams.class_names, ious))
        rank_zero_info(f"per-class IoU (%):\n{'class':<{width}}     IoU\n{rows}")

    def class_iou(self, stage: str, metric: MulticlassJaccardIndex) -> list[float]:
        """Logs `<stage>_IoU/<class>` from `metric` (then reset); the values."""
        ious = metric.compute().tolist()
        metric.reset()
        for name, iou in zip(self.hparams.class_names, ious):
            self.log(f"{stage}_IoU/{name}", iou, sync_dist=False)
        return ious

    def colour(self, labels: Tensor) -> Tensor:
        """(H, W) class indices as a (3, H', W') picture in the palette (ignored pixels black), resized
        as overlay_panel resizes."""
        palette = torch.tensor(self.hparams.palette + [[0, 0, 0]], dtype=torch.float32) / 255
        indices = torch.where(labels == IGNORE_INDEX, len(self.hparams.palette), labels).cpu()
        return overlay_panel(palette[indices].permute(2, 0, 1), mode="nearest")

    def predict_step(self, batch: tuple[Tensor, list[str]], batch_idx: int) -> dict:
        images, names = batch
        labels = self(images).argmax(dim=1)
        return dict(images=images.cpu(), labels=labels.cpu(), names=list(names))

    def start_prediction(self, output_dir: Path) -> None:
        """Remove the label and overlay PNGs of an earlier `gspn predict`."""
        remove_outputs(output_dir, "*.png")

    def write_prediction(self, prediction: dict, output_dir: Path) -> None:
        """<name>.png: the labels with the data set's palette; <name>_overlay.png: the image blended with them."""
        palette = self.hparams.palette
        for image, labels, name in zip(prediction["images"], prediction["labels"], prediction["names"]):
            stem = safe_name(Path(name).stem)
            save_label_png(labels, palette, output_dir / f"{stem}.png")
            save_overlay_png(image, labels, palette, self.hparams.overlay_alpha, output_dir / f"{stem}_overlay.png")
