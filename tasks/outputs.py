"""Files written by `gspn predict`, for every task: names made safe to use as paths, and removing an
earlier run's outputs before a new run writes its own."""

import contextlib
import re
from pathlib import Path


def safe_name(name: str) -> str:
    """`name` (a class or an image) as one file or folder name: letters, digits, "-", "_" and "." are
    kept, any other character (spaces, path separators) becomes "_", and so does a run of dots, so the
    name never leaves its folder. Never empty."""
    name = re.sub(r"[^\w.-]|\.{2,}", "_", name)  # \w: letters and digits of any script, and "_"
    return "_" if name in ("", ".") else name


def remove_outputs(folder: Path, *patterns: str) -> None:
    """Delete the files under `folder` matching the glob `patterns`, then the sub-folders that this
    leaves empty. Several processes (ranks) may do it at once."""
    parents = set()
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                parents.add(path.parent)
    for directory in parents - {folder}:
        with contextlib.suppress(OSError):  # still holds other files, or another rank removed it
            directory.rmdir()
