"""The lower bound of the bandwidth model (gspn.ops.launch_plan.bound): what no kernel could beat on it."""

import pytest
import torch

from gspn.ops import launch_plan
from gspn.ops.launch_plan import H100, bound, cheapest_step_cycles, model

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
ODD_SHAPES = [(2, 6, 5, 7), (1, 3, 70, 66), (3, 40, 9, 600), (1, 1, 1, 1), (4, 96, 130, 17)]


def test_cheapest_step_by_hand():
    # One lane per line: 2 dependent multiply-adds, 3 N issued. N = 64: an exchange every 4 steps
    # costs (28 + 4 + 3 * 8) / 4 = 14 cycles a step, against 3 * 4 = 12 issued.
    assert cheapest_step_cycles(1) == 4
    assert cheapest_step_cycles(2) == 8
    assert cheapest_step_cycles(64) == 14
    assert cheapest_step_cycles(128) == 14


def test_bound_by_hand():
    # (1, 32, 64, 64) per-channel float32 forward: 6 planes of 32 channels, 4 bytes each.
    got = bound((1, 32, 64, 64), 32, torch.float32, backward=False)
    floor = 6 * 32 * 64 * 64 * 4 / 3.0e12
    chain = 600e-9 + 64 * 14 / 1.755e9
    assert got["floor"] == pytest.approx(floor)
    assert got["chain"] == pytest.approx(chain)
    assert got["time"] == pytest.approx(chain)
    assert got["share"] == pytest.approx(floor / chain)
    assert 0.94 < got["share"] < 0.945
    # A large shape is bound by the copy floor.
    assert bound((16, 8, 1024, 1024), 8, torch.float32, backward=True)["share"] == 1.0


@pytest.mark.parametrize("direction", ["lr", "tb"])
@pytest.mark.parametrize("shape", launch_plan.TABLE_SHAPES + ODD_SHAPES, ids=str)
def test_no_modelled_kernel_beats_the_bound(shape, direction):
    for groups in sorted({1, shape[1]}):
        for dtype in DTYPES:
            for backward in (False, True):
                m = model(shape, groups, dtype, backward, H100, direction)
                if m["plan"] is None:
                    continue
                b = bound(shape, groups, dtype, backward, H100, direction)
                assert b["floor"] == pytest.approx(m["floor"])
                assert m["time"] >= b["time"], (groups, dtype, backward)
                assert m["share"] <= b["share"]


def test_modelled_steps_are_no_cheaper_than_the_cheapest():
    assert launch_plan.CYCLES_WARP_STEP >= cheapest_step_cycles(64)
    assert launch_plan.CYCLES_BARRIER + launch_plan.CYCLES_PER_ELEMENT >= cheapest_step_cycles(6400)


def test_plan_table_shows_the_bound():
    rows = launch_plan.table(shapes=[(1, 32, 64, 64)], dtypes=(torch.bfloat16,))
    shared_forward = next(r for r in rows if r["weights"] == "shared" and r["pass"] == "fwd")
    # floor 0.27 us against 0.6 us of latency alone: out of reach of 70% whatever the kernel.
    assert shared_forward["bound %copy"] == "24"
    assert int(shared_forward["model %copy"]) <= 24
