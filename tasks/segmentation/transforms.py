"""The standard training augmentation of semantic segmentation, from mmsegmentation's transforms:
random resize of `scale` (long, short edge) by a ratio in `ratio_range` keeping the aspect, random
crop (at most `cat_max_ratio` of it one class), horizontal flip, photometric distortion, padding to
the crop (image 0, labels 255).

mmcv's transforms draw from numpy's global generator; each call reseeds it from torch's generator
(which the data module seeds per sample) and restores it afterwards, so augmentation is a function
of the sample's seed.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .segmentor import IGNORE_INDEX


class TrainAugmentation:
    def __init__(self, crop_size: Sequence[int] = (512, 512), scale: Sequence[int] = (2048, 512),
                 ratio_range: Sequence[float] = (0.5, 2.0), cat_max_ratio: float = 0.75, flip_prob: float = 0.5,
                 photometric: bool = True):
        from mmcv.transforms import Compose, Pad, RandomFlip, RandomResize

        from .mmseg_setup import import_mmseg

        import_mmseg()
        from mmseg.datasets.transforms import PhotoMetricDistortion, RandomCrop

        crop = tuple(crop_size)
        steps = [RandomResize(scale=tuple(scale), ratio_range=tuple(ratio_range), keep_ratio=True),
                 RandomCrop(crop_size=crop, cat_max_ratio=cat_max_ratio, ignore_index=IGNORE_INDEX),
                 RandomFlip(prob=flip_prob)]
        if photometric:
            steps.append(PhotoMetricDistortion())
        steps.append(Pad(size=(crop[1], crop[0]), pad_val=dict(img=0, seg=IGNORE_INDEX)))
        self.pipeline = Compose(steps)

    def __call__(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        # mmcv works on HWC uint8 BGR images (the photometric distortion converts BGR to HSV).
        bgr = image.mul(255).round().byte().permute(1, 2, 0).numpy()[..., ::-1].copy()
        # int32: OpenCV resizes and pads it (not int64); 8 bits would wrap labels above 255.
        results = dict(img=bgr, gt_seg_map=labels.numpy().astype(np.int32), seg_fields=["gt_seg_map"],
                       img_shape=bgr.shape[:2], ori_shape=bgr.shape[:2])
        state = np.random.get_state()
        try:
            np.random.seed(int(torch.randint(2**31, ())))
            results = self.pipeline(results)
        finally:
            np.random.set_state(state)
        rgb = torch.from_numpy(np.ascontiguousarray(results["img"][..., ::-1]))
        return rgb.permute(2, 0, 1).float().div(255), torch.from_numpy(results["gt_seg_map"].astype(np.int64))
