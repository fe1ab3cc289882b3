"""Parameter and MAC counts; the propagation op's FLOP formula."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from gspn.models import count_params, create_model, model_summary
from gspn.ops import propagate


def test_propagate_counts_four_macs_per_element_forward_and_eight_backward():
    x, lam = torch.randn(2, 3, 4, 5, requires_grad=True), torch.randn(2, 3, 4, 5)
    a, b, c = (torch.rand(2, 1, 4, 5) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        propagate(x, lam, a, b, c, direction="tb").sum().backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.gspn.propagate] == 2 * 4 * x.numel()
    assert counts[torch.ops.gspn.propagate_backward] == 2 * 8 * x.numel()


def test_model_summary_reports_params_and_macs(capsys):
    model = create_model("gspn_nano", num_classes=10)
    summary = model_summary(model, (3, 64, 48))
    assert summary["params"] == count_params(model)
    assert 0 < summary["macs"] < 1e9
    assert "M parameters" in capsys.readouterr().out
    batch = model_summary(model, (2, 3, 64, 48), show=False)
    assert batch["macs"] == 2 * summary["macs"]
    assert next(model.parameters()).device.type == "cpu", "the summary leaves the model where it was"
