"""Pictures of a run, for every logger and for people without one: each is written as a PNG under the
run's log folder (the default_root_dir without a logger), `<folder>/<name>/step_<global step>.png`,
and handed to each logger that takes images: TensorBoard's `add_image`, or a logger's own `log_image`
(Weights & Biases, Neptune, ...). The CSV logger takes none: its run has the PNG files.

Also the pictures the tasks draw: an image grid, a confusion matrix as a heat map.
"""

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor


def log_image(task, name: str, image: Tensor) -> Path | None:
    """`image` (3, H, W) in [0, 1] as the PNG and to the loggers; the PNG's path (None off rank zero)."""
    trainer = task.trainer
    if not trainer.is_global_zero:
        return None
    image = image.detach().float().clamp(0, 1).cpu().expand(3, -1, -1)  # grey as RGB
    folder = run_folder(trainer) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{trainer.global_step:07d}.png"
    pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(name, image, trainer.global_step)
        elif hasattr(logger, "log_image"):
            logger.log_image(key=name, images=[pixels], step=trainer.global_step)
    return path


def run_folder(trainer) -> Path:
    """The first logger's folder, else the default_root_dir. (Trainer.log_dir says the same but
    broadcasts it from rank zero: called on one rank alone, it would wait for the others for ever.)"""
    logger = trainer.loggers[0] if trainer.loggers else None
    return Path(getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir)


def image_grid(images: Tensor, columns: int) -> Tensor:
    """(N, C, H, W) -> one (C, rows * H, columns * W) image, row by row, unused cells black."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    padded = torch.cat([images, images.new_zeros(rows * columns - n, c, h, w)])
    return padded.view(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, columns * w)


def confusion_image(matrix: Tensor, cell: int = 16) -> Tensor:
    """A (classes, classes) confusion matrix (rows: the true class) as a (3, H, W) heat map: each row
    normalised to the share of its images, white (none) to dark blue (all); a true class without images
    is grey."""
    counts = matrix.float()
    totals = counts.sum(dim=1, keepdim=True)
    share = torch.where(totals > 0, counts / totals.clamp_min(1), torch.full_like(counts, float("nan")))
    white, blue = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.03, 0.19, 0.42])
    colours = white + share[..., None] * (blue - white)
    colours = torch.where(share.isnan()[..., None], torch.tensor([0.75, 0.75, 0.75]), colours)
    size = max(1, min(cell, 512 // max(1, len(matrix))))
    return colours.permute(2, 0, 1).repeat_interleave(size, dim=1).repeat_interleave(size, dim=2)
