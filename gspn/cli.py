"""The `gspn` command: LightningCLI with the subcommands fit, validate, test and predict, plus
`gspn configs`, which lists the configs shipped with the package.

    gspn fit --config tasks/classification/configs/demo.yaml
    gspn fit --config configs/trainer/gpu.yaml --config <task config> --model.init_args.lr 1e-3 --print_config

Model and data are chosen by class path; every task package in `gspn.tasks` is imported first, so
short class names such as ClassificationTask resolve. Configs are read in jsonargparse's
`omegaconf+` mode: `${...}` interpolations resolve after every --config and command-line override.
Each task names in `data_links` the arguments it takes from the data module; the best checkpoint is
selected on the task's `monitor` metric; checkpoints go to <default_root_dir>/checkpoints (so
`--ckpt_path last` resumes and `--ckpt_path best` finds the best of the run) and `gspn predict`
writes files to <default_root_dir>/predictions. Lightning is imported only when the command runs.
"""

import difflib
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from pathlib import Path

CONFIG_PACKAGES = ("gspn.configs", "gspn.tasks")


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


def checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or ".") / "checkpoints")


def prediction_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or ".") / "predictions")


def best_checkpoint(directory: str) -> str:
    """The best checkpoint recorded by the run whose checkpoints are in `directory` (in its last.ckpt)."""
    import torch

    last = Path(directory) / "last.ckpt"
    if last.is_file():
        states = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
        for key, state in states.items():
            # "Checkpoint{...}" (older runs: "ModelCheckpoint{...}"); other callbacks hold no best_model_path
            best = state.get("best_model_path") if key.startswith(("Checkpoint", "ModelCheckpoint")) else None
            if best and Path(best).is_file():
                return best
    raise ValueError(f"--ckpt_path best: no best checkpoint is recorded in {last}; pass a checkpoint file "
                     f"instead (the files in {directory}, or --trainer.default_root_dir of the run)")


def load_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def data_value(name: str):
    return lambda data: getattr(data, name, None)


def flatten(config, prefix: str = "") -> dict:
    """Dotted keys of a nested Namespace/dict, e.g. {"init_args.lr": 1e-3}."""
    items = vars(config) if hasattr(config, "__dict__") else config
    flat = {}
    for key, value in items.items():
        if hasattr(value, "__dict__") or isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
            parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)
            parser.link_arguments("model.monitor", "checkpoint.monitor", apply_on="instantiate")
            parser.link_arguments("model.monitor_mode", "checkpoint.mode", apply_on="instantiate")
            parser.add_lightning_class_args(PredictionWriter, "prediction")
            parser.link_arguments("trainer.default_root_dir", "prediction.output_dir", compute_fn=prediction_dir)

        def before_instantiate_classes(self) -> None:
            # Links are added once the task is known: only the names the chosen task declares, since a
            # target it does not take would reach it through **kwargs.
            subcommand = self.config.get("subcommand")
            parser = self._subcommand_parsers[subcommand] if subcommand else self.parser
            settings = self.config[subcommand] if subcommand else self.config
            for name in getattr(load_class(settings.model.class_path), "data_links", ()):
                parser.link_arguments("data", f"model.init_args.{name}", compute_fn=data_value(name),
                                      apply_on="instantiate")

        def _parse_ckpt_path(self) -> None:
            subcommand = self.config.get("subcommand")
            if not subcommand:
                return
            settings = self.config[subcommand]
            if settings.get("ckpt_path") == "best" and subcommand != "fit":
                try:
                    settings.ckpt_path = best_checkpoint(settings.checkpoint.dirpath)
                except ValueError as error:
                    self.parser.error(str(error))
            given = flatten(settings.model)
            super()._parse_ckpt_path()
            for key, value in flatten(self.config[subcommand].model).items():
                if key in given and given[key] != value:
                    warnings.warn(f"--ckpt_path {settings.ckpt_path}: model.{key} is taken from the checkpoint "
                                  f"({value!r}), not from the config or command line ({given[key]!r})")

        def instantiate_classes(self) -> None:
            # Bad settings found while building the task or the data (unknown backbone, missing folder,
            # a missing link) are one clear line, not a traceback through the parser.
            try:
                super().instantiate_classes()
            except (ValueError, FileNotFoundError, ImportError) as error:
                self.parser.error(f"{type(root_cause(error)).__name__}: {root_cause(error)}")

    return GSPNCLI, GSPNArgumentParser


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


def class_arguments(class_path: str) -> set[str]:
    """The keyword arguments a class accepts, following **kwargs up its bases."""
    try:
        cls = load_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return set()
    names = set()
    for base in getattr(cls, "__mro__", ()):
        if "__init__" in vars(base):
            parameters = inspect.signature(base.__init__).parameters.values()
            names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
            if not any(p.kind == p.VAR_KEYWORD for p in parameters):
                break
    return names


def cli_main(args: list[str] | None = None):
    """Run the command with `args` (default: sys.argv[1:]) and return the LightningCLI object."""
    arguments = sys.argv[1:] if args is None else args
    if arguments[:1] == ["configs"]:
        print_configs()
        return None
    from jsonargparse import set_parsing_settings
    from lightning.pytorch import LightningDataModule, LightningModule

    # `${trainer.max_steps}` in a config means the key at the top of that config, whichever subcommand runs.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    import_tasks()
    cli_class, parser_class = build_cli_class()
    return cli_class(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     seed_everything_default=0, auto_configure_optimizers=False, parser_class=parser_class,
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": "gspn", "allow_abbrev": False, "parser_mode": "omegaconf+"}, args=args)


def main() -> None:
    cli_main()
