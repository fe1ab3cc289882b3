"""The help of every task and data module (`gspn fit --model.help X`, `--data.help X`), through the real
entry point: each option of the class has a description (read by jsonargparse from the class's
google-style docstring), an option that takes one of a fixed set shows its choices, and the page is short."""

import inspect
import re
import types
import typing

import pytest

from gspn.cli import cli_main, import_tasks

from .conftest import tiny_config, write_config

import_tasks()

from gspn.tasks.base import BaseTask  # noqa: E402  (after import_tasks, which imports every task package)
from gspn.tasks.data import TaskDataModule  # noqa: E402

COLUMNS = 120  # the help is wrapped to the terminal's width; the line counts below are at this one
MAX_LINES = 150


def task_classes(base: type) -> list[type]:
    """The classes of the task packages derived from `base` (not `base` itself)."""
    found, pending = [], list(base.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("gspn.tasks.") and cls not in found:
            found.append(cls)
        pending += cls.__subclasses__()
    return sorted(found, key=lambda cls: cls.__name__)


TASKS = task_classes(BaseTask)
DATA_MODULES = task_classes(TaskDataModule)


def options_of(cls: type) -> dict[str, inspect.Parameter]:
    """The arguments the `gspn` command offers for `cls`: its __init__'s, and those of the bases that its
    **kwargs passes on to."""
    options = {}
    for base in cls.__mro__:
        if "__init__" not in vars(base):
            continue
        parameters = inspect.signature(base.__init__).parameters.values()
        for parameter in parameters:
            if parameter.name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                options.setdefault(parameter.name, parameter)
        if not any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters):
            break
    return options


def choices_of(annotation) -> tuple | None:
    """The values of a Literal annotation, also inside a union (`Literal[...] | None`)."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            if typing.get_origin(member) is typing.Literal:
                return typing.get_args(member)
    return None


def run_help(arguments: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(COLUMNS))
    with pytest.raises(SystemExit) as stop:
        cli_main(arguments)
    assert stop.value.code in (0, None), capsys.readouterr().err[-2000:]
    return capsys.readouterr().out


def option_entries(page: str, group: str) -> dict[str, tuple[str, str]]:
    """Each `--<group>.<name>` entry of a help page: name -> (metavar, text after it, whitespace joined)."""
    entries = {}
    for block in re.split(rf"^  --{group}\.", page, flags=re.M)[1:]:
        first, _, rest = block.partition("\n")
        invocation, _, text = first.partition("  ")  # e.g. "name METAVAR[, --group.name+ METAVAR]", "  ", text
        name, _, metavar = invocation.split(", --")[0].partition(" ")
        entries[name] = (metavar, " ".join(f"{text} {rest}".split()))
    return entries


def check_page(cls: type, page: str, group: str) -> None:
    lines = page.splitlines()
    summary = inspect.getdoc(cls).splitlines()[0].rstrip(".")
    assert f"{summary}:" in lines, f"{cls.__name__}: the help's title is not the docstring's summary line"
    entries = option_entries(page, group)
    for name, parameter in options_of(cls).items():
        assert name in entries, f"{cls.__name__}: no --{group}.{name} in its help"
        metavar, text = entries[name]
        description = text.split("(type:")[0].strip()
        assert description, f"{cls.__name__}: --{group}.{name} has no description (its docstring's Args entry)"
        choices = choices_of(parameter.annotation)
        if choices:
            assert metavar == "{" + ",".join(choices) + "}", f"{cls.__name__}: --{group}.{name} shows {metavar!r}"
    assert len(lines) < MAX_LINES, f"{cls.__name__}: its help is {len(lines)} lines at {COLUMNS} columns"


def test_every_task_and_data_module_is_checked():
    assert {"ClassificationTask", "SegmentationTask", "GenerationTask"} <= {cls.__name__ for cls in TASKS}
    assert {"ImageFolderDataModule", "SyntheticShapesDataModule", "ProceduralScenesDataModule",
            "SegmentationFolderDataModule", "ADE20KDataModule", "SyntheticShapesGenerationData",
            "ImageFolderGenerationData", "LatentFileData"} <= {cls.__name__ for cls in DATA_MODULES}


@pytest.mark.parametrize("task", TASKS, ids=lambda cls: cls.__name__)
def test_a_tasks_help_describes_every_option(task, capsys, monkeypatch):
    check_page(task, run_help(["fit", "--model.help", task.__name__], capsys, monkeypatch), "model")


@pytest.mark.parametrize("data", DATA_MODULES, ids=lambda cls: cls.__name__)
def test_a_data_modules_help_describes_every_option(data, capsys, monkeypatch):
    check_page(data, run_help(["fit", "--data.help", data.__name__], capsys, monkeypatch), "data")


def test_gspn_help_mentions_gspn_configs(capsys, monkeypatch):
    assert "`gspn configs`" in " ".join(run_help(["--help"], capsys, monkeypatch).split())


def test_the_choices_are_those_the_code_checks():
    from gspn.tasks.generation import GenerationTask
    from gspn.tasks.generation.diffusion import BETA_SCHEDULES, PREDICTION_TYPES, SAMPLERS
    from gspn.tasks.generation.quality import FEATURES
    from gspn.tasks.optim import SCHEDULES

    generation = options_of(GenerationTask)
    assert choices_of(options_of(BaseTask)["schedule"].annotation) == SCHEDULES
    assert choices_of(generation["sampler"].annotation) == tuple(SAMPLERS)
    assert choices_of(generation["prediction_type"].annotation) == PREDICTION_TYPES
    assert choices_of(generation["beta_schedule"].annotation) == BETA_SCHEDULES
    assert choices_of(generation["fid_features"].annotation) == FEATURES


def test_a_backbone_module_is_given_by_class_path_and_in_python(tmp_path, capsys, monkeypatch):
    """ClassificationTask's module backbone is typed gspn.models.Backbone, not nn.Module (whose help listed
    every module class): a class_path to a network with the backbone API parses, one to another module
    is an error, and in Python the module is passed as it is."""
    from gspn.models import GSPNBackbone
    from gspn.tasks.classification import ClassificationTask

    def config(class_path: str, init_args: dict) -> str:
        settings = tiny_config(tmp_path / "run")
        settings["model"]["init_args"].update(backbone={"class_path": class_path, "init_args": init_args},
                                              backbone_args=None)
        return write_config(tmp_path / "backbone.yaml", settings)

    tiny = {"dims": 8, "depths": [1, 1, 1, 1], "d_state": 2}
    printed = run_help(["fit", "--config", config("gspn.models.GSPNBackbone", tiny), "--print_config"],
                       capsys, monkeypatch)
    assert re.search(r"backbone:\s+class_path: gspn\.models\.(backbone\.)?GSPNBackbone", printed), printed
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", "--config", config("torch.nn.Linear", {"in_features": 2, "out_features": 3}),
                  "--print_config"])
    assert stop.value.code == 2 and "Backbone" in capsys.readouterr().err

    task = ClassificationTask(backbone=GSPNBackbone(**tiny), num_classes=3)
    assert isinstance(task.model, GSPNBackbone) and task.model.num_classes == 3
