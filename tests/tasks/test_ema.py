"""The EMA update across dtypes: under `bf16-true` or `16-true` precision the average and the weights
need not share one."""

import pytest
import torch

from gspn.tasks.ema import ema_average


@pytest.mark.parametrize("average_dtype, current_dtype", [(torch.float32, torch.bfloat16),
                                                          (torch.bfloat16, torch.float32),
                                                          (torch.float16, torch.float32)])
def test_ema_average_keeps_the_average_dtype(average_dtype, current_dtype):
    average, current = torch.zeros(4, dtype=average_dtype), torch.ones(4, dtype=current_dtype)
    updated = ema_average(average, current, torch.tensor(1000), decay=0.75, warmup=True)
    assert updated.dtype == average_dtype
    assert torch.equal(updated, torch.full((4,), 0.25, dtype=average_dtype))
