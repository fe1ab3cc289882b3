"""The `gspn` command: LightningCLI with the subcommands fit, validate, test and predict.

    gspn fit --config tasks/classification/configs/demo.yaml
    gspn fit --config base.yaml --config overrides.yaml --model.init_args.lr 1e-3 --print_config

The model (a LightningModule) and the data (a LightningDataModule) are chosen by class path; every
task package under `tasks/` is imported first, so short class names such as ClassificationTask
resolve. `data.num_classes` is linked to `model.init_args.num_classes`, and the best checkpoint is
selected on the task's `monitor` metric. Checkpoints go to <default_root_dir>/checkpoints, so
`--ckpt_path last` resumes the latest run. Lightning is imported only when the command runs.
"""

import importlib
import pkgutil
import warnings
from pathlib import Path


def import_tasks() -> list[str]:
    """Import every module of every task package under `tasks`; a task whose optional dependencies
    are missing is skipped with a warning. Returns the imported module names."""
    import tasks

    imported = []
    # A package that fails to import is reported once, by the import_module below.
    for info in pkgutil.walk_packages(tasks.__path__, prefix="tasks.", onerror=lambda name: None):
        try:
            importlib.import_module(info.name)
        except ImportError as error:
            warnings.warn(f"gspn: skipping {info.name}: {error}")
        else:
            imported.append(info.name)
    return imported


def checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or ".") / "checkpoints")


def build_cli_class():
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    class GSPNCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True})
            parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)
            parser.link_arguments("model.monitor", "checkpoint.monitor", apply_on="instantiate")
            parser.link_arguments("model.monitor_mode", "checkpoint.mode", apply_on="instantiate")
            parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    return GSPNCLI, {"callbacks": [LearningRateMonitor(logging_interval="step")]}


def cli_main(args: list[str] | None = None):
    """Run the command with `args` (default: sys.argv[1:]) and return the LightningCLI object."""
    from lightning.pytorch import LightningDataModule, LightningModule

    import_tasks()
    cli_class, trainer_defaults = build_cli_class()
    return cli_class(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     trainer_defaults=trainer_defaults, seed_everything_default=0, auto_configure_optimizers=False,
                     save_config_kwargs={"overwrite": True}, parser_kwargs={"allow_abbrev": False}, args=args)


def main() -> None:
    cli_main()
