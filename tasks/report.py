"""What a run says about itself: where it writes, and one plain line per validation when its output is
not a terminal (a background run, a cluster job's log), where the progress bar writes nothing.

With TensorBoard as the only logger, a CSV logger is added beside it (same folder, metrics.csv), so
the metrics of a run can be read without TensorBoard; TensorBoard's hp_metric is the task's own
metric (its `monitor`) rather than -1.
"""

import sys
import time
import warnings

from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info


class RunReport(Callback):
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and [type(logger) for logger in trainer.loggers] == [TensorBoardLogger]:
            board = trainer.loggers[0]
            table = CSVLogger(board.save_dir, name=board.name, version=board.version)
            with warnings.catch_warnings():  # the folder holds TensorBoard's files, which it leaves alone
                warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
                table.experiment
            trainer.loggers = [board, table]

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.monotonic()
        folders = dict.fromkeys(str(logger.log_dir) for logger in trainer.loggers if getattr(logger, "log_dir", None))
        logs = ", ".join(folders)  # TensorBoard and its CSV share one folder: named once
        rank_zero_info(f"run folder: {trainer.default_root_dir}" + (f"; logs: {logs}" if logs else ""))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith("val") and value.numel() == 1}
        monitor = metrics.get(pl_module.monitor)
        if monitor is not None:
            for logger in trainer.loggers:
                logger.log_metrics({"hp_metric": monitor}, step=trainer.global_step)
        if not sys.stdout.isatty():
            shown = " ".join(f"{key} {value:.4g}" for key, value in sorted(metrics.items()))
            elapsed = time.monotonic() - getattr(self, "started", time.monotonic())
            print(f"validation: step {trainer.global_step} epoch {trainer.current_epoch} {shown} "
                  f"({elapsed:.0f} s)", flush=True)
