import math

import numpy as np
import pytest
import torch
from torch import nn

from gspn.tasks.base import seed_all
from gspn.tasks.ema import EMA, ema_average
from gspn.tasks.optim import lr_factor, optimizer_class, parameter_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.scale = nn.Parameter(torch.ones(()))
        self.position = nn.Parameter(torch.zeros(1, 4, 2))
        self.frozen = nn.Parameter(torch.zeros(2, 2), requires_grad=False)

    def no_weight_decay(self) -> set[str]:
        return {"position"}


def test_parameter_groups_exempt_norms_biases_scalars_and_no_weight_decay():
    outer = nn.Sequential(Net(), nn.Linear(4, 2))
    decay, no_decay = parameter_groups(outer, 0.05)
    names = {id(p): n for n, p in outer.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.conv.weight", "1.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "0.conv.bias", "0.norm.bias", "0.norm.weight", "0.position", "0.scale", "1.bias"]
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_warmup_then_cosine():
    factors = [lr_factor(step, warmup_steps=4, total_steps=14, schedule="cosine", min_lr_ratio=0.01) for step in range(16)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert factors[9] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[14] == factors[15] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_warmup_then_polynomial_and_constant():
    poly = [lr_factor(step, warmup_steps=2, total_steps=12, schedule="poly", min_lr_ratio=0.0, power=1.0)
            for step in range(13)]
    assert poly[:2] == [0.5, 1.0]
    assert poly[2:] == pytest.approx([1 - k / 10 for k in range(11)])  # linear to 0: the segmentation recipe
    squared = lr_factor(7, warmup_steps=2, total_steps=12, schedule="poly", min_lr_ratio=0.0, power=2.0)
    assert squared == pytest.approx(0.5**2)
    assert [lr_factor(s, warmup_steps=3, total_steps=None, schedule="constant", min_lr_ratio=0.0)
            for s in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])


def test_optimizer_by_name_or_path():
    assert optimizer_class("SGD") is torch.optim.SGD
    assert optimizer_class("torch.optim.AdamW") is torch.optim.AdamW
    with pytest.raises(ValueError, match="optimizer: expected a class of torch.optim.*'Adamw'"):
        optimizer_class("Adamw")
    with pytest.raises(ValueError, match="torch.nn.Linear"):
        optimizer_class("torch.nn.Linear")


def test_ema_average_with_decay_warmup():
    average, current = torch.zeros(3), torch.ones(3)
    # after n updates the decay is min(decay, (1 + n) / (10 + n))
    assert torch.allclose(ema_average(average, current, torch.tensor(1), decay=0.9, warmup=True), torch.full((3,), 1 - 2 / 11))
    assert torch.allclose(ema_average(average, current, torch.tensor(1000), decay=0.9, warmup=True), torch.full((3,), 0.1))
    assert torch.allclose(ema_average(average, current, torch.tensor(1), decay=0.9, warmup=False), torch.full((3,), 0.1))
    steps = torch.tensor([3, 4])
    assert torch.equal(ema_average(torch.tensor([1, 2]), steps, torch.tensor(5), decay=0.9, warmup=True), steps)
    with pytest.raises(ValueError, match="ema_decay"):
        EMA(1.5)


def test_seed_all_is_a_function_of_the_sequence():
    draws = []
    for key in ([0, 1, 0], [0, 1, 0], [0, 2, 0]):
        seed_all(np.random.SeedSequence(key))
        draws.append((torch.rand(2), np.random.rand()))
    assert torch.equal(draws[0][0], draws[1][0]) and draws[0][1] == draws[1][1]
    assert not torch.equal(draws[0][0], draws[2][0])
