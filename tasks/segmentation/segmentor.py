"""UPerNet on a GSPN backbone, assembled from mmsegmentation: its EncoderDecoder with the registered
GSPN backbone, UPerHead on the four stages and an auxiliary FCNHead on stage 3, and inference at any
image size (whole image or sliding window, optionally multi-scale and flipped)."""

import logging
import warnings
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from gspn.errors import ConfigError

IGNORE_INDEX = 255


def upernet_config(num_classes: int, backbone: dict, channels: Sequence[int], *, decode_channels: int = 512,
                   pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1, aux_channels: int = 256,
                   aux_weight: float = 0.4, aux_index: int = 2, inference: dict | None = None) -> dict:
    """The mmseg config of the segmentor. Cross-entropy ignores label 255 and averages over the other
    pixels; BatchNorm in the heads (SyncBN under DDP through Lightning's sync_batchnorm)."""
    norm = dict(type="BN", requires_grad=True)
    common = dict(num_classes=num_classes, norm_cfg=norm, align_corners=False, ignore_index=IGNORE_INDEX,
                  dropout_ratio=dropout)

    def loss(weight: float) -> dict:
        return dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=weight, avg_non_ignore=True)

    decode = dict(type="UPerHead", in_channels=list(channels), in_index=list(range(len(channels))),
                  pool_scales=tuple(pool_scales), channels=decode_channels, loss_decode=loss(1.0), **common)
    config = dict(type="EncoderDecoder", backbone=backbone, decode_head=decode, test_cfg=inference or dict(mode="whole"))
    if aux_weight > 0:
        config["auxiliary_head"] = dict(type="FCNHead", in_channels=channels[aux_index], in_index=aux_index,
                                        channels=aux_channels, num_convs=1, concat_input=False,
                                        loss_decode=loss(aux_weight), **common)
    return config


def build_segmentor(config: dict) -> nn.Module:
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger

    from .mmseg_setup import import_mmseg

    with warnings.catch_warnings():  # mmseg's heads build their losses through its own deprecated helper
        warnings.filterwarnings("ignore", message="``build_loss`` would be deprecated", category=UserWarning)
        model = import_mmseg().build(ConfigDict(config))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every tensor it visits
    try:
        for head in ("decode_head", "auxiliary_head"):
            if hasattr(model, head):
                getattr(model, head).init_weights()  # the heads' own init (conv_seg ~ N(0, 0.01))
    finally:
        logger.setLevel(level)
    return model


def data_samples(labels: Tensor) -> list:
    """mmseg's per-image containers for a batch of (B, H, W) label maps."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    samples = []
    for label in labels:
        shape = tuple(label.shape)
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label[None]),
                                     metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape)))
    return samples


def scaled_size(height: int, width: int, scale: Sequence[int] | None, ratio: float) -> tuple[int, int]:
    """(height, width) rescaled to fit `scale` (long edge, short edge) keeping the aspect, times `ratio`."""
    factor = ratio
    if scale is not None:
        factor *= min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


def segment(model: nn.Module, images: Tensor, out_size: Sequence[int], scale: Sequence[int] | None = None,
            ratios: Sequence[float] = (1.0,), flip: bool = False) -> Tensor:
    """Class probabilities (B, classes, *out_size): each view (scale * ratio, and its mirror image with
    `flip`) runs through mmseg's inference (whole image or sliding window, per the model's test_cfg),
    is resized to out_size and the views' softmax are averaged."""
    total = None
    views = 0
    for ratio in ratios:
        size = scaled_size(*images.shape[-2:], scale, ratio)
        resized = images if size == tuple(images.shape[-2:]) else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            view = resized.flip(-1) if mirrored else resized
            metas = [dict(img_shape=size, ori_shape=size, pad_shape=size) for _ in range(len(view))]
            logits = model.inference(view, metas)
            if mirrored:
                logits = logits.flip(-1)
            if tuple(logits.shape[-2:]) != tuple(out_size):
                logits = F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
            views += 1
    return total / views


def check_batch_norm_batch(batch_size: int, owner: str) -> None:
    if batch_size < 2:
        raise ConfigError(f"{owner}: training needs at least 2 images per batch and device: the pooling branch of "
                          "UPerHead applies BatchNorm to 1x1 maps, which is undefined for one image "
                          f"(got batch_size {batch_size}). Use batch_size >= 2, or SyncBN across devices.")

