"""The checkpoint callback of the `gspn` command: Lightning's ModelCheckpoint, plus a last.ckpt when
training ends between two validations.

ModelCheckpoint with a monitor saves after validations only, and its own end-of-training save runs
only if it never saved. A run that stops at max_steps 3,400 with validations every 500 steps would
keep step 3,000 and lose its last 400 steps. This one writes last.ckpt at the end unless it already
holds the final step. (The EMA callback copies the average into the model only at `on_fit_end`,
after this, so the final checkpoint still holds the raw weights next to the average.)
"""

from lightning.pytorch.callbacks import ModelCheckpoint


class Checkpoint(ModelCheckpoint):
    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_last and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)
