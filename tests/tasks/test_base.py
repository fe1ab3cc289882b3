import math

import numpy as np
import pytest
import torch
from torch import nn

from tasks.base import ExponentialMovingAverage, parameter_groups, seed_all, warmup_cosine


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


def test_warmup_cosine():
    factors = [warmup_cosine(step, 4, 14, 0.01) for step in range(16)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert factors[9] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[14] == factors[15] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


def test_ema_update():
    model = nn.Linear(2, 1)
    ema = ExponentialMovingAverage(model, decay=0.5)
    start = ema.model.weight.clone()
    assert not ema.model.weight.requires_grad
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay min(0.5, 2 / 11)
    assert torch.allclose(ema.model.weight, start + (1 - 2 / 11))
    ema.update(model)  # then min(0.5, 3 / 12)
    assert torch.allclose(ema.model.weight, start + 1 - 0.25 * (2 / 11))
    assert ema.updates.item() == 2
    assert "updates" in ema.state_dict()


def test_seed_all_is_a_function_of_the_sequence():
    draws = []
    for key in ([0, 1, 0], [0, 1, 0], [0, 2, 0]):
        seed_all(np.random.SeedSequence(key))
        draws.append((torch.rand(2), np.random.rand()))
    assert torch.equal(draws[0][0], draws[1][0]) and draws[0][1] == draws[1][1]
    assert not torch.equal(draws[0][0], draws[2][0])
