"""Loading weights from a checkpoint file, a weights folder or the Hub, with a report of what did not fit."""

import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from gspn.errors import CheckpointError

from .hub import CONFIG_FILE, HUB_PREFIX, WEIGHTS_FILE, download, read_safetensors

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> dict:
    """The contents of a checkpoint or weights file, read with `weights_only=True` (no code is
    unpickled). A missing, empty or truncated file is a CheckpointError naming the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes); it was not written to the end")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            cause = f"it holds a {unsafe[1]}, which is not loaded since that would run code from the file"
        elif isinstance(error, pickle.UnpicklingError):
            cause = "truncated or not a PyTorch checkpoint"
        elif "zip" in cause.lower() or isinstance(error, EOFError):
            cause = f"truncated or not a PyTorch checkpoint ({cause})"
        raise CheckpointError(f"{path}: cannot read the checkpoint: {cause}") from error
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a checkpoint or state dict, found a {type(content).__name__}")
    return content


@dataclass
class Weights:
    """Tensors read from `source`, and the config that describes their network when the source has one
    (a weights folder, or a .safetensors file written by save_pretrained)."""

    source: str
    state: dict[str, Tensor]
    config: dict | None = None


def read_weights(source: str | Path) -> Weights:
    """The weights of a folder of config.json + model.safetensors, a .safetensors file, a Hub repository
    `hf-hub:owner/name`, or a checkpoint or state dict file (read with `read_checkpoint`)."""
    label = str(source)
    if label.startswith(HUB_PREFIX):
        return read_folder(download(label[len(HUB_PREFIX):]), label)
    path = Path(source)
    if path.is_dir():
        return read_folder(path, label)
    if path.suffix == ".safetensors":
        return Weights(label, *read_safetensors(path, label))
    return Weights(label, extract_state_dict(read_checkpoint(path)))


def read_folder(folder: Path, label: str) -> Weights:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{label}: no {CONFIG_FILE} in this folder; a weights folder holds {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE}, as written by save_pretrained or `gspn export`")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{label}: {CONFIG_FILE} is not valid JSON ({error})") from error
    state, _ = read_safetensors(folder / WEIGHTS_FILE, label)
    return Weights(label, state, config)


@dataclass
class LoadReport:
    """What `load_checkpoint` did. `mismatched`: (key, checkpoint shape, model shape), not loaded."""

    prefix: str = ""
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors" + (f" (prefix {self.prefix!r} stripped)" if self.prefix else "")]
        for title, keys in (("missing from the checkpoint", self.missing),
                            ("unexpected in the checkpoint", self.unexpected),
                            ("shape mismatch, skipped", [f"{k}: {tuple(a)} in file, {tuple(b)} in model"
                                                         for k, a, b in self.mismatched])):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
                lines.append(f"{len(keys)} {title}: {shown}")
        return "\n".join(lines)


def extract_state_dict(checkpoint: dict) -> dict[str, Tensor]:
    """The tensors of a plain state dict, {"state_dict": ...} (Lightning) or {"model": ...}."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}


def find_prefix(keys: list[str], model_keys: set[str]) -> str:
    """The prefix (e.g. "model." or "backbone.") whose stripping matches the most model keys."""
    votes: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in model_keys:
                prefix = ".".join(parts[:i]) + "." if i else ""
                votes[prefix] = votes.get(prefix, 0) + 1
    return min(votes, key=lambda p: (-votes[p], len(p))) if votes else ""


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = False,
                    prefix: str | None = None) -> LoadReport:
    """Load weights from `path` into `model` and report missing, unexpected and mismatched keys.

    `path`: anything `read_weights` reads (a weights folder, a .safetensors file, `hf-hub:owner/name`, a
    checkpoint). Accepts plain state dicts, {"state_dict": ...} (Lightning) and {"model": ...}; a common key prefix
    such as "model." or "backbone." is found and stripped (or give `prefix`). Keys outside the prefix
    count as unexpected. Tensors whose shape differs from the model's are skipped and reported. With
    `strict`, any of the three raises a CheckpointError after nothing has been loaded. A file of which no
    tensor fits the model is a CheckpointError.
    """
    return load_state(model, read_weights(path).state, path, strict=strict, prefix=prefix)


def load_state(model: nn.Module, state: dict[str, Tensor], path: str | Path, *, strict: bool = False,
               prefix: str | None = None) -> LoadReport:
    """`load_checkpoint` of tensors already read from `path`."""
    own = model.state_dict()
    if prefix is None:
        prefix = find_prefix(list(state), set(own))
    report = LoadReport(prefix=prefix)
    usable = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name not in own:
            report.unexpected.append(key)
        elif value.shape != own[name].shape:
            report.mismatched.append((name, tuple(value.shape), tuple(own[name].shape)))
        else:
            usable[name] = value
    skipped = {name for name, _, _ in report.mismatched}
    report.missing = [k for k in own if k not in usable and k not in skipped]
    if own and not usable:
        shapes = f"; {len(report.mismatched)} by name but with another shape" if report.mismatched else ""
        raise CheckpointError(f"{path}: no tensor matches the model {type(model).__name__} ({len(own)} tensors; the "
                              f"file has {len(state)} tensors, e.g. {', '.join(list(state)[:3])}{shapes}): weights "
                              "of another architecture or size?")
    if strict and not report.clean:
        raise CheckpointError(f"load_checkpoint({str(path)!r}, strict=True):\n{report}")
    model.load_state_dict(usable, strict=False)
    report.loaded = list(usable)
    (log.info if report.clean else log.warning)("load_checkpoint %s: %s", path, report)
    return report
