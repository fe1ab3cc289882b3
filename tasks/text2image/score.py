"""Class accuracy of the demo's generated images, judged by the shapes classifier of the generation task.

    python -m gspn.tasks.text2image.score --judge <classifier checkpoint> <gspn predict output folder>

Each role folder that `gspn predict` wrote (student/, teacher/, model/) is judged on its own: an image's
class is the one its prompt names (a caption of CaptionedShapesData, read back from the file name), and
the judge is a classification checkpoint trained on SyntheticShapes
(tasks/generation/configs/shapes_classifier.yaml). Teacher and student images of the same index share
their prompt and noise, so their accuracies compare like for like.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gspn.errors import ConfigError

from ..backbones import backbone_from_checkpoint
from ..images import list_images
from ..outputs import safe_name
from ..shapes import CLASSES, MEAN, STD
from .data import SHAPE_CAPTIONS


def class_of_file(path: Path) -> int:
    """The class named by the prompt in a predicted file's name, `<index>_<prompt>.png`."""
    prompt = path.stem.partition("_")[2]
    for label, name in enumerate(CLASSES):
        if any(safe_name(caption)[:80] == prompt for caption in SHAPE_CAPTIONS[name]):
            return label
    raise ConfigError(f"{path}: its prompt {prompt!r} is no caption of CaptionedShapesData, so its class is unknown")


@torch.no_grad()
def judge_folder(judge, folder: Path, image_size: int = 32) -> dict:
    """{"accuracy", "per_class": {class: accuracy}, "count"} of the images in `folder`, resized to the
    judge's `image_size`."""
    paths = list_images(folder)
    if not paths:
        raise ConfigError(f"{folder}: no images to judge")
    labels = torch.tensor([class_of_file(path) for path in paths])
    images = torch.stack([torch.from_numpy(np.array(Image.open(path).convert("RGB").resize(
        (image_size, image_size), Image.BILINEAR))).permute(2, 0, 1).float() / 255 for path in paths])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    correct = judge((images - mean) / std).argmax(1) == labels
    per_class = {CLASSES[label]: correct[labels == label].float().mean().item() for label in labels.unique().tolist()}
    return {"accuracy": correct.float().mean().item(), "per_class": per_class, "count": len(paths)}


def judge_predictions(judge_path: str | Path, output_dir: str | Path) -> dict[str, dict]:
    """judge_folder of every role folder under `output_dir`, by role."""
    judge = backbone_from_checkpoint(judge_path, "--judge").eval()
    roles = sorted(path for path in Path(output_dir).iterdir() if path.is_dir())
    if not roles:
        raise ConfigError(f"{output_dir}: no role folders (student/, teacher/, model/) from gspn predict")
    return {role.name: judge_folder(judge, role) for role in roles}


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gspn.tasks.text2image.score", description=__doc__.split("\n")[0])
    parser.add_argument("--judge", required=True, help="a classification checkpoint trained on SyntheticShapes")
    parser.add_argument("output_dir", help="the folder gspn predict wrote (student/, teacher/, ...)")
    options = parser.parse_args(arguments)
    scores = judge_predictions(options.judge, options.output_dir)
    print("| images | count | class accuracy | " + " | ".join(CLASSES) + " |")
    print("| --- " * (3 + len(CLASSES)) + "|")
    for role, score in scores.items():
        cells = [f"{score['per_class'][name]:.0%}" if name in score["per_class"] else "-" for name in CLASSES]
        print(f"| {role} | {score['count']} | {score['accuracy']:.1%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
