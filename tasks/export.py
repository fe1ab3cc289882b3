"""`gspn export`: a task checkpoint as a weights folder (config.json, model.safetensors, a model card),
ready for `huggingface_hub.upload_folder`; nothing is uploaded.

The task is rebuilt from the hyper-parameters the checkpoint carries and given its weights (the EMA
average when the run kept one: tasks/ema.py stores it as `state_dict`); its network `.model` is what is
saved. A backbone or denoiser of gspn.models is saved as that family and loads without Lightning;
any other network (segmentation's UPerNet) as family "task", rebuilt through its task when loaded.
`save_onnx` adds the network as `model.onnx` (docs/weights.md, "Deploy").
"""

import importlib
from collections.abc import Sequence
from pathlib import Path

from gspn.errors import CheckpointError, ConfigError
from gspn.models import read_checkpoint, save_pretrained
from gspn.models.arguments import jsonable
from gspn.models.pretrained import TASK_PACKAGE, family_of, network_config

DATA_KEYS = ("image_size", "crop_pct", "mean", "std", "classes", "class_names", "num_classes")
ONNX_FILE = "model.onnx"


def export_checkpoint(ckpt_path: str | Path, folder: str | Path, data=None) -> Path:
    """Write the network of the task checkpoint `ckpt_path` to `folder`. `data`: the run's data module,
    whose preprocessing (image_size, crop_pct, mean, std, class names) the folder then records too."""
    checkpoint = read_checkpoint(ckpt_path)
    hparams = checkpoint.get("hyper_parameters") or {}
    task_path = hparams.get("_class_path", "")
    if not task_path.startswith(TASK_PACKAGE) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{ckpt_path}: not a checkpoint of a gspn task (its hyper_parameters name no class of "
                              f"{TASK_PACKAGE}); `gspn fit` writes those")
    module, _, name = task_path.rpartition(".")
    task_class = getattr(importlib.import_module(module), name, None)
    if task_class is None:
        raise CheckpointError(f"{ckpt_path}: made by {task_path}, which this version of gspn does not have")
    if hasattr(task_class, "export"):  # a task that writes its own result (text-to-image: the GSPN modules)
        task_class.load_from_checkpoint(ckpt_path, map_location="cpu").export(folder)
        return Path(folder)
    task = task_class(**rebuild_arguments(hparams, task_class))
    try:
        task.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{ckpt_path}: its weights do not fit the {name} its hyper_parameters describe: "
                              f"{error}") from error
    return save_task_network(task, folder, pretrained_cfg=preprocessing(hparams, data),
                             training=training_record(checkpoint, ckpt_path, task_path))


def save_task_network(task, folder: str | Path, *, pretrained_cfg: dict | None = None,
                      training: dict | None = None) -> Path:
    """Write the network of `task` (`task.model`) to `folder` with `save_pretrained`, as its gspn.models
    family or, for another network, as family "task" with the task's arguments. pretrained_cfg: default
    what the task's arguments say (mean, std, class names, ...)."""
    task_class = type(task)
    task_path = f"{task_class.__module__}.{task_class.__qualname__}"
    arguments = rebuild_arguments(dict(task.hparams), task_class)
    config = network_config(task.model) if family_of(task.model) else \
        {"family": "task", "architecture": task_class.__name__, "task": task_path, "args": jsonable(arguments)}
    if pretrained_cfg is None:
        pretrained_cfg = preprocessing(dict(task.hparams))
    return save_pretrained(task.model, folder, config=config, pretrained_cfg=pretrained_cfg, training=training)


def save_onnx(network, folder: str | Path, image_size: Sequence[int] | None = None, **options) -> Path:
    """Write `network` (a weights folder's model: backbone, denoiser or segmentor) to `folder`/model.onnx
    through gspn.ops.onnx.export, batch dynamic, and return the file; needs the `onnx` extra.

    Height and width are dynamic too unless `image_size` (height, width) fixes them, as a network that
    pools adaptively (the segmentor's UPerHead) needs: ONNX fixes such pooling at the export size. A
    backbone takes images from 33 pixels; a denoiser takes (x, t, y) (y only with classes), height and
    width multiples of its patch from 2 patches. `options` go to the export (optimize, verify, ...).
    """
    import torch
    from torch.export import Dim

    from gspn.models.denoiser import GSPNDenoiser
    from gspn.ops.onnx import export

    if image_size is not None and len(image_size) != 2:
        raise ConfigError(f"save_onnx: image_size must be (height, width), got {image_size!r}")
    if image_size is None and any(isinstance(m, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d))
                                  for m in network.modules()):
        raise ConfigError(f"save_onnx: a {type(network).__name__} pools adaptively, which ONNX fixes at the export "
                          "size: pass image_size=(height, width), the size it will run at")
    batch = Dim("batch")
    denoiser = isinstance(network, GSPNDenoiser)
    if image_size is not None:
        (height, width), image = image_size, {0: batch}
    elif denoiser:
        patch = network.patch_size
        height, width = 4 * patch, 6 * patch
        image = {0: batch, 2: patch * Dim("rows", min=2), 3: patch * Dim("cols", min=2)}
    else:
        height, width = 64, 96
        image = {0: batch, 2: Dim("height", min=33), 3: Dim("width", min=33)}
    channels = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    inputs, shapes = [torch.randn(2, channels, height, width)], [image]
    if denoiser:  # timesteps, and class labels where it has classes
        inputs, shapes = inputs + [torch.rand(2) * 1000], shapes + [{0: batch}]
        if network.num_classes > 0:
            inputs, shapes = inputs + [torch.tensor([0, 1])], shapes + [{0: batch}]
    path = Path(folder) / ONNX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    options.setdefault("external_data", False)  # one file; torch moves weights over 1.5 GB to model.onnx.data
    training = network.training
    try:
        export(network.eval(), inputs, path, dynamic_shapes=tuple(shapes), **options)
    finally:
        network.train(training)
    return path


def rebuild_arguments(hparams: dict, task_class: type) -> dict:
    """The task's arguments without what does not shape the network: its initial weights (`pretrained`,
    replaced by the checkpoint's) and the settings of evaluation and sampling (`inference_args`, which
    may name files of the training machine), left at their defaults."""
    arguments = {key: value for key, value in hparams.items() if not key.startswith("_")}
    if "pretrained" in arguments:
        arguments["pretrained"] = None
    for key in getattr(task_class, "inference_args", ()):
        arguments.pop(key, None)
    return arguments


def preprocessing(hparams: dict, data=None) -> dict:
    """mean, std, input_size, crop_pct, class_names, num_classes: from the data module (when given),
    then from the task's own arguments, which win (the segmentation task normalises its inputs itself)."""
    data_values = {key: getattr(data, key, None) for key in DATA_KEYS} if data is not None else {}
    return {**known_preprocessing(data_values), **known_preprocessing(hparams)}


def known_preprocessing(values: dict) -> dict:
    size = values.get("image_size")
    size = [size, size] if isinstance(size, int) else size
    names = values.get("class_names") or values.get("classes")
    found = {"mean": values.get("mean"), "std": values.get("std"), "input_size": [3, *size] if size else None,
             "crop_pct": values.get("crop_pct"), "class_names": list(names) if names else None,
             "num_classes": values.get("num_classes")}
    return {key: jsonable(value) for key, value in found.items() if value is not None}


def training_record(checkpoint: dict, ckpt_path: str | Path, task_path: str) -> dict:
    """The card's training section: the task, how far the run got, which weights, the best score of the
    checkpoint callback, and the hyper-parameters."""
    run = checkpoint.get("run") or {}
    step, target = run.get("global_step", checkpoint.get("global_step")), run.get("target_steps")
    progress = f"step {step:,}" + (f" of {target:,}" if target else "") + f", epoch {checkpoint.get('epoch')}"
    if run.get("stopped_by"):
        progress += f" (stopped by {run['stopped_by']})"
    hparams = checkpoint.get("hyper_parameters") or {}
    ema = hparams.get("ema_decay")
    weights = f"the exponential moving average (decay {ema})" if "current_model_state" in checkpoint and ema \
        else "the trained weights"
    name, metrics = Path(ckpt_path).name, {}
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_score") is not None:
            metrics[f"{state['monitor']} (best of the run)"] = float(state["best_model_score"])
            if Path(state.get("best_model_path") or "").name == name:
                name += " (the run's best)"
    init_args = {key: value for key, value in hparams.items() if not key.startswith("_")}
    return {"task": task_path, "checkpoint": name, "weights": weights, "progress": progress, "metrics": metrics,
            "config": {"model": {"class_path": task_path, "init_args": init_args}}}
