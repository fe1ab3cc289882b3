"""A classifier backbone from the settings every task uses for one, and back from a task's checkpoint.

The convention: a task that trains a gspn.models backbone preset takes it as `backbone` (the preset's
name), `backbone_args` (the preset's overrides) and `num_classes`, so its checkpoints record the three
under "hyper_parameters". ClassificationTask builds its network with `create_backbone`; any task that
needs such a network without its task (generation's FID and accuracy judge) rebuilds it from the file
with `backbone_from_checkpoint`, knowing nothing of the task that trained it.
"""

from pathlib import Path

from torch import nn

from gspn.errors import CheckpointError
from gspn.models import create_model, load_checkpoint, read_checkpoint


def create_backbone(backbone: str, num_classes: int, backbone_args: dict | None = None) -> nn.Module:
    """The gspn.models backbone preset `backbone` with a classifier of num_classes and `backbone_args`."""
    return create_model(backbone, "backbone", num_classes=num_classes, **(backbone_args or {}))


def backbone_from_checkpoint(path: str | Path, owner: str) -> nn.Module:
    """The backbone a task checkpoint was trained with, built from its recorded backbone, num_classes
    and backbone_args and loaded strictly with its weights (the averaged ones when the run kept an
    EMA). The file is read with `weights_only=True`. A file that names no preset backbone, or whose
    weights do not fit it, is a CheckpointError starting with `owner` (the argument that named it)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{owner}: {path} is not a file (a checkpoint of a task with a backbone preset, "
                              "e.g. classification)")
    settings = read_checkpoint(path).get("hyper_parameters", {})
    if not isinstance(settings.get("backbone"), str) or not settings.get("num_classes"):
        raise CheckpointError(f"{owner}: {path} is not a checkpoint of a task with a preset backbone, e.g. "
                              "classification (its hyper_parameters name no backbone and num_classes)")
    model = create_backbone(settings["backbone"], settings["num_classes"], settings.get("backbone_args"))
    load_checkpoint(model, path, strict=True)
    return model
