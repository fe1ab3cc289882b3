"""One checkpoint folder per training run.

A fresh `gspn fit` writes its checkpoints to `<base>/run-N`, where base is the checkpoint callback's
`dirpath` (default `<default_root_dir>/checkpoints`) and N is one more than the highest run there,
claimed with an exclusive mkdir so that two runs started together never share a folder. Resuming from
a checkpoint of a run continues in that run's folder. `--ckpt_path last` and `--ckpt_path best` follow
the newest run that has written a last.ckpt; the best checkpoint is the one that run recorded.
"""

import re
from pathlib import Path

from gspn.errors import CheckpointError
from gspn.models import read_checkpoint

RUN_NAME = re.compile(r"run-(\d+)")


def checkpoint_base(dirpath: str | Path | None, default_root_dir: str | Path | None) -> Path:
    return Path(dirpath) if dirpath else Path(default_root_dir or ".") / "checkpoints"


def run_number(folder: Path) -> int | None:
    match = RUN_NAME.fullmatch(folder.name)
    return int(match.group(1)) if match else None


def run_folders(base: Path) -> list[Path]:
    """The run folders under base, oldest (lowest number) first."""
    if not base.is_dir():
        return []
    runs = [entry for entry in base.iterdir() if entry.is_dir() and run_number(entry) is not None]
    return sorted(runs, key=run_number)


def claim_run_folder(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    number = max((run_number(folder) for folder in run_folders(base)), default=0) + 1
    while True:
        folder = base / f"run-{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another run claimed it first
            number += 1


def is_run_folder(folder: str | Path, base: Path) -> bool:
    folder = Path(folder).resolve()
    return folder.parent == base.resolve() and run_number(folder) is not None


def last_checkpoint(base: Path, asked: str = "last") -> Path:
    """last.ckpt of the newest run under base."""
    for folder in reversed(run_folders(base)):
        if (folder / "last.ckpt").is_file():
            return folder / "last.ckpt"
    raise CheckpointError(f"--ckpt_path {asked}: no run under {base} has a last.ckpt (looked for "
                          f"{base}/run-*/last.ckpt); give a checkpoint file, or the --trainer.default_root_dir of the run")


def best_checkpoint(base: Path) -> Path:
    """The best checkpoint recorded by the newest run under base (in its last.ckpt)."""
    last = last_checkpoint(base, asked="best")
    for key, state in read_checkpoint(last).get("callbacks", {}).items():
        best = state.get("best_model_path") if key.startswith("Checkpoint") else None
        if best and Path(best).is_file():
            return Path(best)
    raise CheckpointError(f"--ckpt_path best: {last} records no best checkpoint (the run has not validated yet); "
                          f"pass a checkpoint file instead")
