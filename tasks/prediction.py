"""Writing `gspn predict` outputs to files: one callback for every task, the format is the task's."""

from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


class PredictionWriter(BasePredictionWriter):
    """After each predicted batch, hands the task's `predict_step` output to its `write_prediction`
    with the output folder: `output_dir`, or `<default_root_dir>/predictions` when it is not given."""

    def __init__(self, output_dir: str | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir else None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"
        if stage == "predict":
            pl_module.start_prediction(self.output_dir)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # The data module is set up before the callbacks: a predict that fails there must still not
        # leave an earlier run's outputs looking current.
        if trainer.state.fn == "predict" and self.output_dir is not None:
            pl_module.start_prediction(self.output_dir)

    def on_predict_end(self, trainer, pl_module) -> None:
        pl_module.finish_prediction(self.output_dir)
        rank_zero_info(f"predictions: {self.output_dir}")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        pl_module.write_prediction(prediction, self.output_dir)
