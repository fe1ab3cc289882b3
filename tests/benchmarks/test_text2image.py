"""gspn.benchmarks.text2image: its FLOP counts against hand counts, the Amdahl arithmetic, the published
configs against the published parameter counts, and that a quick run prints every table."""

import pytest
import torch

pytest.importorskip("diffusers")

from gspn.benchmarks import text2image as bench  # noqa: E402
from gspn.t2i.tiny import tiny_unet  # noqa: E402

TINY = tiny_unet().config


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def attention_flops(batch: int, tokens: int, channels: int) -> int:
    """One self-attention forward by hand: q, k, v and output projections (T x C by C x C, 4 T C^2
    multiply-adds), Q K^T (per head T x d by d x T; over the heads T^2 C) and the scores times V (T^2 C
    again). Two FLOPs per multiply-add; biases, scaling and softmax are not counted."""
    return 2 * batch * (4 * tokens * channels**2 + 2 * tokens**2 * channels)


@pytest.mark.parametrize("batch", [1, 2])
def test_each_self_attention_layer_costs_its_hand_count(batch):
    census = bench.census(TINY, 16, batch)
    # one transformer per down level, two per up level, one in the middle (at the last down level's size)
    assert [(layer.channels, layer.side) for layer in census.attn1] == [(32, 16), (64, 8), (64, 8), (64, 8), (32, 16),
                                                                        (32, 16), (64, 8)]
    for layer in census.attn1:
        assert layer.flops == attention_flops(batch, layer.side**2, layer.channels), layer.name
    assert 0 < census.attn1_flops + census.attn2 < census.total


@pytest.mark.parametrize("variant", ["gspn1", "gspn2"])
def test_the_gspn_costing_equals_the_converted_unet_counted_whole(variant):
    from torch.utils.flop_counter import FlopCounterMode

    import gspn.t2i as t2i

    unet = t2i.convert(bench.build_unet(TINY), variant=variant, chunk=4)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(**bench.unet_inputs(unet, 16))
    assert bench.census(TINY, 16).gspn_flops(variant) == counter.get_total_flops()


def test_amdahl_bound():
    assert bench.amdahl(0.0) == 1.0
    assert bench.amdahl(0.5) == pytest.approx(2.0)  # half the work made free
    assert bench.amdahl(0.75, 1 / 3) == pytest.approx(2.0)  # 0.25 + 0.75 / 3 of the work is left
    assert bench.amdahl(0.9, 1.0) == pytest.approx(1.0)
    census = bench.census(TINY, 16)
    for variant in ("gspn1", "gspn2"):
        replaced = sum(bench.gspn_flops(layer.channels, variant, layer.side) for layer in census.attn1)
        share, cost = census.attn1_flops / census.total, replaced / census.attn1_flops
        assert census.total / census.gspn_flops(variant) == pytest.approx(bench.amdahl(share, cost))
        assert bench.amdahl(share, cost) < bench.amdahl(share)


@pytest.mark.parametrize("model, attn1, shapes", [
    ("SD-1.5", 16, {(320, 8), (640, 8), (1280, 8)}),
    ("SD-XL", 70, {(640, 10), (1280, 20)}),
])
def test_the_published_configs_give_the_published_unets(model, attn1, shapes):
    unet = bench.build_unet(bench.CONFIGS[model])  # meta device: nothing allocated
    assert sum(p.numel() for p in unet.parameters()) == bench.PUBLISHED_PARAMS[model]
    layers = bench.self_attention(unet)
    assert len(layers) == attn1 and all(name.endswith("attn1") for name in layers)
    assert {(m.query_dim, m.heads) for m in layers.values()} == shapes


def test_the_quick_run_prints_the_protocol_and_every_table(capsys, one_thread):
    bench.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    for header in ("| attention backend | diffusers AttnProcessor2_0 -> aten._scaled_dot_product",
                   "| threads           | 1",
                   "Layer: SD-1.5 self-attention, C=320, 8 heads x 40, tokens = (latent/1)^2",
                   "Layer: SD-1.5 self-attention, C=1280, 8 heads x 160, tokens = (latent/8)^2",
                   "Layer: SD-XL self-attention, C=640, 10 heads x 64, tokens = (latent/2)^2",
                   "Layer: SD-XL self-attention, C=1280, 20 heads x 64, tokens = (latent/4)^2",
                   "Whole-UNet FLOPs", "| SD-XL  | 512 (64)", "Whole-UNet forward: tiny SD config",
                   "| GSPN-2, chunk 4 ", "Targets"):
        assert header in out, header
    assert "skipped" not in out


def test_calls_over_the_time_limit_are_skipped_and_said_so(capsys, one_thread):
    bench.main(["--quick", "--threads", "1", "--tables", "layers,unet", "--max-seconds", "0"])
    out = capsys.readouterr().out
    assert out.count(bench.SKIPPED) == 6 * 3 + 3  # attn1, GSPN-1 and GSPN-2 in each of six shapes; three UNets
    assert "Whole-UNet FLOPs" not in out and "| not measured |" in out


def test_the_shared_copy_has_its_own_modules_and_the_same_weights():
    unet = tiny_unet()
    twin = bench.shared_copy(unet)
    assert all(a is b for a, b in zip(unet.parameters(), twin.parameters(), strict=True))
    assert twin.conv_in is not unet.conv_in
