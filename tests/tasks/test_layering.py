"""Tasks do not import each other (design.md §2): what several tasks use lives in tasks/*.py.

Every module of every task package is parsed with `ast`; an import of another task package, absolute
(gspn.tasks.<other>) or relative (..<other> from a task's module), fails with the file and line.
"""

import ast
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[2] / "tasks"
PACKAGES = sorted(path.parent.name for path in TASKS.glob("*/__init__.py"))


def imported_modules(path: Path, package: str, root: Path = TASKS) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `path`, a module of the task
    package `package` under `root`; `from X import name` counts as X.name (name may be a module)."""
    parts = ["gspn", "tasks", package, *path.relative_to(root / package).with_suffix("").parts]
    here = parts[:-1]  # the package a relative import starts from (for __init__.py, its own)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_other_task(module: str, package: str) -> bool:
    """Whether `module` is, or lies inside, a task package other than `package`."""
    parts = module.split(".")
    return parts[:2] == ["gspn", "tasks"] and len(parts) > 2 and parts[2] in PACKAGES and parts[2] != package


def test_the_task_packages_are_found():
    assert {"classification", "generation", "segmentation"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_task_package_imports_no_other_task_package(package):
    crossings = [f"{path.relative_to(TASKS.parent)}:{line} imports {module}"
                 for path in sorted((TASKS / package).rglob("*.py"))
                 for line, module in imported_modules(path, package) if is_other_task(module, package)]
    assert not crossings, ("tasks do not import each other; move what they share into tasks/*.py:\n"
                           + "\n".join(crossings))


@pytest.mark.parametrize("source, crosses", [
    ("from ...classification.data import ImageFolder", True),
    ("from ... import classification", True),
    ("from gspn.tasks.classification import ClassificationTask", True),
    ("import gspn.tasks.classification.shapes", True),
    ("from ...images import read_image", False),
    ("from ... import images", False),
    ("from ..data import SyntheticShapesGenerationData", False),
    ("from .. import module", False),
    ("from gspn.tasks.generation.data import LatentFileData", False),
])
def test_the_check_sees_relative_and_absolute_imports(tmp_path, source, crosses):
    module = tmp_path / "generation" / "sub" / "quality.py"
    module.parent.mkdir(parents=True)
    module.write_text(source + "\n")
    found = imported_modules(module, "generation", root=tmp_path)
    assert any(is_other_task(name, "generation") for _, name in found) == crosses
