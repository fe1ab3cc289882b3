"""The `gspn` command: LightningCLI with the subcommands fit, validate, test and predict, plus
`gspn configs`, which lists the configs shipped with the package, and `gspn export`, which turns a
checkpoint into a weights folder (gspn/tasks/export.py).

    gspn fit --config tasks/classification/configs/demo.yaml
    gspn fit --config configs/trainer/gpu.yaml --config <task config> --model.init_args.lr 1e-3 --print_config

Model and data are chosen by class path; every task package in `gspn.tasks` is imported first, so
short class names such as ClassificationTask resolve. Configs are read in jsonargparse's
`omegaconf+` mode: `${...}` interpolations resolve after every --config and command-line override.
Each task names in `data_links` the arguments it takes from the data module; the best checkpoint is
selected on the task's `monitor` metric; each run's checkpoints go to <default_root_dir>/checkpoints/run-N
(`--ckpt_path last` resumes the newest run and `--ckpt_path best` finds its best checkpoint; see
gspn/tasks/runs.py) and `gspn predict` writes files to <default_root_dir>/predictions. Lightning is
imported only when the command runs.

Lightning private members used (checked against lightning 2.6, pinned below 2.7;
tests/platform/test_runs.py fails if an upgrade removes them): LightningCLI._subcommand_parsers and
_parse_ckpt_path here, and those of ModelCheckpoint listed in gspn/tasks/checkpoint.py.
"""

import difflib
import importlib
import inspect
import os
import pkgutil
import re
import sys
import warnings
from pathlib import Path

from gspn.dotted import import_object
from gspn.errors import CheckpointError, ConfigError, GSPNError

CONFIG_PACKAGES = ("gspn.configs", "gspn.tasks")
DESCRIPTION = ("Train, evaluate and run GSPN models: gspn {fit,validate,test,predict} --config <yaml>. "
               "`gspn configs` lists the configs shipped with the package; `gspn export --ckpt_path <ckpt> <folder>` "
               "writes a checkpoint's network as a weights folder; --debug shows the traceback of an error.")


def import_tasks() -> list[str]:
    """Import every module of every task package in `gspn.tasks`; returns their names. A task that
    fails to import is an error (with its traceback), not a skipped task."""
    import gspn.tasks

    def reraise(name: str) -> None:
        raise  # noqa: PLE0704  (called by walk_packages while it handles the package's import error)

    names = [info.name for info in pkgutil.walk_packages(gspn.tasks.__path__, prefix="gspn.tasks.", onerror=reraise)]
    for name in names:
        importlib.import_module(name)
    return names


def shipped_configs() -> list[Path]:
    """The YAML configs installed with the package: shared pieces and every task's configs/."""
    found = []
    for package in CONFIG_PACKAGES:
        for folder in importlib.import_module(package).__path__:
            found += sorted(Path(folder).rglob("*.yaml"))
    return found


def print_configs() -> None:
    print("Configs shipped with gspn (pass any of these paths to --config):")
    for path in shipped_configs():
        print(f"  {path}")


def export(arguments: list[str]) -> None:
    """`gspn export --ckpt_path <ckpt> <folder> [--config <yaml> ...]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="gspn export", description=(
        "Write the network of a task checkpoint as a weights folder: config.json, model.safetensors and a model "
        "card README.md, ready for `hf upload <owner>/<name> <folder>` (nothing is uploaded); of a text-to-image "
        "checkpoint, what its run writes at the end (gspn.safetensors, or pipeline/)."))
    parser.add_argument("--ckpt_path", required=True, help=(
        "a checkpoint written by gspn fit, or last / best: those of the newest run of the --config's "
        "trainer.default_root_dir (of ./checkpoints without --config)"))
    parser.add_argument("folder", help="the folder to write (created if needed; its three files are replaced)")
    parser.add_argument("--config", action="append", default=[], help=(
        "the run's config, as given to gspn fit (repeatable): its data module adds the preprocessing (image "
        "size, crop fraction, mean, std, class names) to the folder's config.json"))
    parser.add_argument("--onnx", nargs="*", type=int, metavar="SIZE", help=(
        "also write model.onnx (the `onnx` extra): batch, height and width dynamic; a segmentor needs its "
        "fixed input size, --onnx HEIGHT WIDTH"))
    options = parser.parse_args(arguments)
    if options.onnx not in (None, []) and len(options.onnx) != 2:
        parser.error(f"--onnx takes nothing or HEIGHT WIDTH, got {' '.join(map(str, options.onnx))}")
    from gspn.tasks.export import export_checkpoint, save_onnx

    settings = merged_configs(options.config)
    data = data_module(settings, options.config) if settings.get("data") else None
    ckpt_path = named_checkpoint(options.ckpt_path, (settings.get("checkpoint") or {}).get("dirpath"),
                                 (settings.get("trainer") or {}).get("default_root_dir"))
    folder = export_checkpoint(ckpt_path, options.folder, data)
    if options.onnx is not None:
        from gspn.models import from_pretrained

        save_onnx(from_pretrained(folder), folder, options.onnx or None)
    files = ", ".join(sorted(path.name for path in folder.iterdir()))
    print(f"wrote {folder}: {files} (upload: hf upload <owner>/<name> {folder})")


def merged_configs(configs: list[str]) -> dict:
    """`configs` merged (later files winning, `${...}` resolved); {} for none."""
    from omegaconf import OmegaConf

    missing = [path for path in configs if not Path(path).is_file()]
    if missing:
        raise ConfigError(f"--config: no such file: {', '.join(missing)}")
    if not configs:
        return {}
    return OmegaConf.to_container(OmegaConf.merge(*(OmegaConf.load(path) for path in configs)), resolve=True)


def data_module(settings: dict, configs: list[str]):
    """The data module that the merged `settings` of `configs` describe, constructed but not set up. A
    short class name is looked up in the task packages."""
    data = settings.get("data") or {}
    class_path = data.get("class_path", "")
    data_class = import_object(class_path) or next(
        (getattr(sys.modules[name], class_path) for name in import_tasks()
         if inspect.isclass(getattr(sys.modules[name], class_path, None))), None)
    if data_class is None:
        raise ConfigError(f"--config {' '.join(configs)}: data.class_path {class_path!r} names no data module class")
    return data_class(**data.get("init_args", {}))


def data_value(name: str):
    return lambda data: getattr(data, name, None)


def build_cli_class():
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from gspn.tasks.checkpoint import Checkpoint
    from gspn.tasks.prediction import PredictionWriter

    class GSPNArgumentParser(LightningArgumentParser):
        """Errors come without the ~60 lines of usage text, with the closest valid key when one is close."""

        def error(self, message: str, ex: Exception | None = None):
            if not self.exit_on_error:
                return super().error(message, ex)
            parser = getattr(ex, "subcommand_parser", None) or self
            sys.stderr.write(f"error: {message}\n")
            suggestion = closest_key(message, parser)
            if suggestion:
                sys.stderr.write(f"       did you mean {suggestion}?\n")
            sys.stderr.write(f"(options: {parser.prog.replace(' [options]', '')} --help)\n")
            sys.exit(2)

    class GSPNCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(Checkpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True})
            parser.link_arguments("model.monitor", "checkpoint.monitor", apply_on="instantiate")
            parser.link_arguments("model.monitor_mode", "checkpoint.mode", apply_on="instantiate")
            parser.add_lightning_class_args(PredictionWriter, "prediction")

        def before_instantiate_classes(self) -> None:
            # Links are added once the task is known: only the names the chosen task declares, since a
            # target it does not take would reach it through **kwargs.
            subcommand = self.config.get("subcommand")
            parser = self._subcommand_parsers[subcommand] if subcommand else self.parser
            settings = self.config[subcommand] if subcommand else self.config
            for name in getattr(import_object(settings.model.class_path), "data_links", ()):
                parser.link_arguments("data", f"model.init_args.{name}", compute_fn=data_value(name),
                                      apply_on="instantiate")
            if subcommand == "predict":
                one_device(settings.trainer)
                if settings.get("return_predictions") is None:  # the writer writes them: keep none in memory
                    settings.return_predictions = False

        def _parse_ckpt_path(self) -> None:
            subcommand = self.config.get("subcommand")
            if not subcommand or not self.config[subcommand].get("ckpt_path"):
                return
            settings = self.config[subcommand]
            try:
                settings.ckpt_path = str(named_checkpoint(settings.ckpt_path, settings.checkpoint.dirpath,
                                                          settings.trainer.default_root_dir,
                                                          ("last",) if subcommand == "fit" else ("last", "best")))
                self.checkpoint_hparams = checkpoint_hyperparameters(settings.ckpt_path, settings.model.class_path)
            except GSPNError as error:
                self.parser.error(str(error))
            task = import_object(settings.model.class_path)
            given = given_arguments(settings.model)
            super()._parse_ckpt_path()
            model = self.config[subcommand].model
            for key, value in given.items():
                if subcommand != "fit" and key in getattr(task, "inference_args", ()):
                    model.init_args[key] = value  # sampling settings may change after training
                elif key in model.init_args and model.init_args[key] != value:
                    warnings.warn(f"--ckpt_path {settings.ckpt_path}: model.init_args.{key} is taken from the "
                                  f"checkpoint ({model.init_args[key]!r}), not from the config or command line "
                                  f"({value!r})")

        def instantiate_classes(self) -> None:
            # Bad settings found while building the task or the data (unknown backbone, missing folder,
            # a missing link) are one clear line, not a traceback through the parser.
            try:
                super().instantiate_classes()
                check_data_links(self.model, self.datamodule, getattr(self, "checkpoint_hparams", None))
            except (ValueError, FileNotFoundError, ImportError) as error:
                self.parser.error(f"{type(root_cause(error)).__name__}: {root_cause(error)}")

    return GSPNCLI, GSPNArgumentParser


def named_checkpoint(ckpt_path: str, dirpath: str | None, default_root_dir: str | None,
                     names: tuple[str, ...] = ("last", "best")) -> Path:
    """The file meant by --ckpt_path: "last" and "best" (those of `names`) follow the newest run under
    the checkpoint folder (gspn.tasks.runs); a path is taken as it is."""
    if ckpt_path not in names:
        return Path(ckpt_path)
    from gspn.tasks.runs import best_checkpoint, checkpoint_base, last_checkpoint

    base = checkpoint_base(dirpath, default_root_dir)
    return last_checkpoint(base) if ckpt_path == "last" else best_checkpoint(base)


def checkpoint_hyperparameters(path: str, class_path: str) -> dict:
    """The task arguments stored in a checkpoint; a checkpoint of another task is an error."""
    from gspn.models import read_checkpoint

    hparams = read_checkpoint(path).get("hyper_parameters", {})
    made_by = hparams.get("_class_path")
    if made_by and made_by.rsplit(".", 1)[-1] != class_path.rsplit(".", 1)[-1]:
        raise CheckpointError(f"--ckpt_path {path}: a checkpoint of {made_by.rsplit('.', 1)[-1]}, but the config's "
                              f"model is {class_path.rsplit('.', 1)[-1]}")
    return hparams


def check_data_links(task, data, checkpoint_hparams: dict | None) -> None:
    """A value the task takes from the data module (num_classes) must match the checkpoint's."""
    for name in getattr(task, "data_links", ()) if checkpoint_hparams else ():
        stored, offered = checkpoint_hparams.get(name), getattr(data, name, None)
        if stored is not None and offered is not None and stored != offered:
            raise CheckpointError(f"--ckpt_path: the checkpoint's model has {name}={stored} but the data module "
                                  f"gives {name}={offered}; to train on other data start from the weights "
                                  "(model.init_args.pretrained) instead of resuming")


def given_arguments(model) -> dict:
    """The task arguments set by a config or the command line: those that differ from the defaults."""
    defaults = class_defaults(model.class_path)
    init_args = dict(vars(model.init_args)) if hasattr(model.init_args, "__dict__") else dict(model.init_args)
    return {key: value for key, value in init_args.items() if key in defaults and defaults[key] != value}


def one_device(trainer) -> None:
    """`gspn predict` writes one file set: it runs in one process, on one device."""
    if trainer.get("devices") not in (1, "1", None) or trainer.get("num_nodes", 1) != 1 or \
            trainer.get("strategy") not in ("auto", None):
        warnings.warn(f"gspn predict runs on one device (devices {trainer.get('devices')} -> 1) so that it "
                      "writes one set of files")
        trainer.devices, trainer.num_nodes, trainer.strategy = 1, 1, "auto"


def root_cause(error: BaseException) -> BaseException:
    """The first exception of a chain (jsonargparse wraps errors raised while instantiating classes)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    return error


def closest_key(message: str, parser) -> str | None:
    """For an error about an unknown option, the valid option spelled most like it: an option of the
    parser or an argument of a class the message names."""
    unknown = re.findall(r"[Oo]ption '([\w.]+)'", message)
    if not unknown:
        return None
    known = {option.lstrip("-") for action in parser._actions for option in action.option_strings}
    for class_path in re.findall(r"class_path '([\w.]+)'", message):
        known |= class_arguments(class_path)
    for word in unknown:
        for candidates, target in ((known, word), ({k.rsplit(".", 1)[-1] for k in known}, word.rsplit(".", 1)[-1])):
            match = difflib.get_close_matches(target, candidates, n=1, cutoff=0.75)
            if match and match[0] != target:
                return match[0]
    return None


def class_defaults(class_path: str) -> dict:
    """The keyword arguments a class accepts and their defaults, following **kwargs up its bases."""
    cls = import_object(class_path)
    defaults = {}
    for base in getattr(cls, "__mro__", ()):
        if "__init__" in vars(base):
            parameters = inspect.signature(base.__init__).parameters.values()
            for p in parameters:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                    defaults.setdefault(p.name, None if p.default is p.empty else p.default)
            if not any(p.kind == p.VAR_KEYWORD for p in parameters):
                break
    return defaults


def class_arguments(class_path: str) -> set[str]:
    return set(class_defaults(class_path))


def cli_main(args: list[str] | None = None):
    """Run the command with `args` (default: sys.argv[1:]) and return the LightningCLI object."""
    arguments = sys.argv[1:] if args is None else args
    if arguments[:1] == ["configs"]:
        print_configs()
        return None
    if arguments[:1] == ["export"]:
        export(arguments[1:])
        return None
    from jsonargparse import set_parsing_settings
    from lightning.pytorch import LightningDataModule, LightningModule

    from gspn.quiet import silence_unactionable

    silence_unactionable()

    # `${trainer.max_steps}` in a config means the key at the top of that config, whichever subcommand runs.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    import_tasks()
    cli_class, parser_class = build_cli_class()
    return cli_class(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     seed_everything_default=0, auto_configure_optimizers=False, parser_class=parser_class,
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": "gspn", "allow_abbrev": False, "parser_mode": "omegaconf+",
                                    "description": DESCRIPTION}, args=args)


def main() -> None:
    """The console entry point: the project's own errors are one line (exit status 1) unless --debug
    is given or GSPN_DEBUG is set; Ctrl-C during training exits with status 130 after saving."""
    from gspn.tasks.checkpoint import RunInterrupted

    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["GSPN_DEBUG"] = "1"
    try:
        cli_main()
    except RunInterrupted as stop:
        sys.stderr.write(f"{stop}\n")
        sys.exit(130)
    except GSPNError as error:
        if os.environ.get("GSPN_DEBUG"):
            raise
        sys.stderr.write(f"error: {one_line(error)}\n(the traceback: --debug)\n")
        sys.exit(1)


def one_line(error: Exception) -> str:
    """The message of an error; one raised in a DataLoader worker carries the worker's traceback, of
    which the last line is the message."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text
