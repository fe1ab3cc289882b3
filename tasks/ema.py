"""The exponential moving average of a task's weights, as a Lightning WeightAveraging callback.

The callback swaps the averaged weights in for validation, saves them as the checkpoint's
`state_dict` (the raw weights go to `current_model_state`) and copies them into the model when
fitting ends, so every evaluation, checkpoint and `load_checkpoint` sees the average. The copy waits
for `on_fit_end` (Lightning copies at `on_train_end`) so that the checkpoint written as training ends
(tasks/checkpoint.py) still holds the raw weights a resumed run continues from.
"""

import functools

from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor

from gspn.errors import ConfigError


def ema_average(average: Tensor, current: Tensor, updates: Tensor, *, decay: float, warmup: bool) -> Tensor:
    """One EMA step. With warm-up the decay is min(decay, (1 + n) / (10 + n)) after n updates, so short
    runs do not average over their random initialisation. Integer buffers follow the model."""
    if not average.is_floating_point():
        return current
    if warmup:
        n = float(updates)
        decay = min(decay, (1 + n) / (10 + n))
    return average.lerp(current.to(average.dtype), 1 - decay)  # under bf16-true the dtypes may differ


class EMA(WeightAveraging):
    """EMA of every parameter and buffer, updated after each optimiser step."""

    def __init__(self, decay: float, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"ema_decay: expected a value in (0, 1), got {decay}")
        super().__init__(use_buffers=True, avg_fn=functools.partial(ema_average, decay=decay, warmup=warmup))
        self.decay = decay

    def on_train_end(self, trainer, pl_module) -> None:
        pass

    def on_fit_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
