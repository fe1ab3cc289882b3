"""Weights folders: a network saved as config.json (what rebuilds it, and the preprocessing it was
trained with), model.safetensors and a model card README.md, the layout of a Hugging Face Hub model
repository; and loaded back from such a folder, a .safetensors file or the Hub (`hf-hub:owner/name`).

config.json holds "family" ("backbone", "denoiser", or "task": the network of a gspn task, such as
the segmentation task's UPerNet, rebuilt by that task), "architecture" (the preset name, or the class
when the network was not made by create_model), "args" (the constructor's arguments: `init_args`, or the
task's), "pretrained_cfg" and "gspn_version".
"""

import importlib
import json
from pathlib import Path

from torch import nn

from gspn import __version__
from gspn.errors import CheckpointError, ConfigError

from .backbone import GSPNBackbone
from .card import model_card
from .checkpoint import load_state, read_weights
from .denoiser import GSPNDenoiser
from .hub import CONFIG_FILE, WEIGHTS_FILE, write_safetensors

CLASSES = {"backbone": GSPNBackbone, "denoiser": GSPNDenoiser}
TASK_PACKAGE = "gspn.tasks."  # the only place a "task" folder's network may be built from


def family_of(model: nn.Module) -> str | None:
    return next((family for family, cls in CLASSES.items() if type(model) is cls), None)


def network_config(model: nn.Module) -> dict:
    """The family, architecture and constructor arguments of a network of gspn.models."""
    family = family_of(model)
    if family is None:
        raise ConfigError(f"save_pretrained: a {type(model).__name__} is not a network of gspn.models "
                          f"({', '.join(cls.__name__ for cls in CLASSES.values())}); pass the config that rebuilds it")
    return {"family": family, "architecture": getattr(model, "architecture", type(model).__name__),
            "args": model.init_args}


def save_pretrained(model: nn.Module, folder: str | Path, *, pretrained_cfg: dict | None = None,
                    config: dict | None = None, training: dict | None = None) -> Path:
    """Write `model` to `folder` as config.json, model.safetensors and README.md (its model card); the
    folder is ready for `huggingface_hub.upload_folder`. Returns the folder.

    pretrained_cfg: the preprocessing the weights expect (mean, std, input_size, crop_pct, class_names,
        ...); default: the model's own `pretrained_cfg`, if it has one.
    config: family, architecture and args, for a network that is not of gspn.models (default:
        `network_config(model)`). training: the card's training section (`gspn export` fills it).
    """
    if pretrained_cfg is None:
        pretrained_cfg = getattr(model, "pretrained_cfg", {})
    config = {**(config or network_config(model)), "pretrained_cfg": dict(pretrained_cfg),
              "gspn_version": __version__}
    try:
        text = json.dumps(config, indent=2)
    except TypeError as error:
        raise ConfigError(f"save_pretrained: the config must be JSON ({error})") from error
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(model.state_dict(), folder / WEIGHTS_FILE, config)
    (folder / CONFIG_FILE).write_text(text + "\n")
    num_params = sum(parameter.numel() for parameter in model.parameters())
    (folder / "README.md").write_text(model_card(config, num_params, training))
    return folder


def from_pretrained(source: str | Path, family: str | None = None) -> nn.Module:
    """The network saved at `source` (a weights folder, a .safetensors file written by save_pretrained,
    or `hf-hub:owner/name`), rebuilt from its config and loaded with its weights, every tensor checked.
    Its preprocessing is `model.pretrained_cfg`. With `family`, a network of another family is refused."""
    weights = read_weights(source)
    config = weights.config
    if config is None:
        raise CheckpointError(f"{source}: the file does not say which network it holds; load it into a preset "
                              f"with create_model(name, pretrained={str(source)!r}), or, for a training "
                              "checkpoint, make a weights folder of it with `gspn export`")
    if family not in (None, config.get("family")):
        raise CheckpointError(f"{source}: holds a {config.get('family')} ({config.get('architecture')}), "
                              f"not a {family}")
    model = build(config, weights.source)
    load_state(model, weights.state, weights.source, strict=True)
    return model


def build(config: dict, source: str) -> nn.Module:
    family, args = config.get("family"), config.get("args", {})
    if family in CLASSES:
        try:
            model = CLASSES[family](**args)
        except TypeError as error:
            raise CheckpointError(f"{source}: the args of {CONFIG_FILE} do not fit {CLASSES[family].__name__}: {error} "
                                  "(written by another version of gspn?)") from error
    elif family == "task":
        model = task_network(config.get("task", ""), args, source)
    else:
        raise CheckpointError(f"{source}: unknown family {family!r} in {CONFIG_FILE}; expected one of "
                              f"{', '.join([*CLASSES, 'task'])} (written by a newer gspn?)")
    model.architecture = config.get("architecture")
    model.pretrained_cfg = dict(config.get("pretrained_cfg") or {})
    return model


def task_network(task: str, args: dict, source: str) -> nn.Module:
    """The network (`.model`) of the gspn task class `task` built with `args`; needs the task's extras."""
    if not task.startswith(TASK_PACKAGE):
        raise CheckpointError(f"{source}: the network is built by {task!r}, which is not a task of {TASK_PACKAGE}; "
                              "only those are built from a weights folder")
    module, _, name = task.rpartition(".")
    task_class = getattr(importlib.import_module(module), name, None)
    if task_class is None:
        raise CheckpointError(f"{source}: no task {name} in {module} (written by another version of gspn?)")
    return task_class(**args).model


def load_pretrained(model: nn.Module, source: str | Path, name: str) -> None:
    """Weights from `source` into the preset `name` just built, every tensor checked. Weights that say
    which architecture they are of (a folder, a .safetensors file from save_pretrained) must be of `name`."""
    weights = read_weights(source)
    if weights.config is not None:
        held = weights.config.get("architecture")
        if held != name:
            raise CheckpointError(f"{source}: weights of {held} (a {weights.config.get('family')}), not of {name}; "
                                  f"from_pretrained({str(source)!r}) builds the network they belong to")
        model.pretrained_cfg = dict(weights.config.get("pretrained_cfg") or {})
    load_state(model, weights.state, weights.source, strict=True)
