"""Running the real `gspn` command in a subprocess on the tiny config of each task, with faults."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.cli.conftest import tiny_config as classification_config
from tests.config_files import write_config
from tests.tasks.generation.conftest import tiny_config as generation_config
from tests.tasks.segmentation.conftest import tiny_config as segmentation_config

REPO = Path(__file__).resolve().parents[2]


def task_config(task: str, root: Path, **trainer) -> dict:
    """Four training batches an epoch, two epochs (eight steps), a validation every two steps, and the
    task's random and stateful parts switched on (augmentation, mixup, drop path, EMA, label dropout)."""
    common = dict(max_epochs=2, val_check_interval=2, logger=False, **trainer)
    if task == "classification":
        config = classification_config(root, **common)
        config["model"]["init_args"].update(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, ema_decay=0.9)
        config["model"]["init_args"]["backbone_args"]["drop_path_rate"] = 0.3
    elif task == "segmentation":
        config = segmentation_config(root, **common)
        config["data"]["init_args"].update(num_train=16)
        config["model"]["init_args"].update(ema_decay=0.9)
    else:
        config = generation_config(root, max_steps=-1, **common)
        config["data"]["init_args"].update(num_train=32)
        config["model"]["init_args"].update(ema_decay=0.9)
    return config


def run_gspn(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "gspn", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def fit(tmp_path: Path, name: str, task: str, *args: str, callbacks: list[dict] | None = None,
        **trainer) -> subprocess.CompletedProcess:
    config = task_config(task, tmp_path / name, **trainer)
    if callbacks:
        config["trainer"]["callbacks"] = callbacks
    path = write_config(tmp_path / f"{name}-{len(callbacks or [])}.yaml", config)
    return run_gspn("fit", "--config", path, *args, cwd=tmp_path)


def fault(callback: str, **init_args) -> dict:
    return {"class_path": f"tests.platform.faults.{callback}", "init_args": init_args}


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The averaged and the raw weights a checkpoint holds."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    raw = {f"raw.{key}": value for key, value in checkpoint.get("current_model_state", {}).items()}
    return checkpoint["state_dict"] | raw


def assert_same_weights(expected: Path, actual: Path) -> None:
    first, second = weights(expected), weights(actual)
    assert first.keys() == second.keys()
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert not differing, f"{len(differing)} of {len(first)} tensors differ, e.g. {differing[:3]}"
