"""The named presets: GSPN-T/S/B (GSPN-1, per-channel), GSPN-2-T/S/B (compact) and a CPU-sized nano."""

from collections.abc import Sequence

from .backbone import GSPNBackbone
from .registry import register_model


def official_chunks(depths: Sequence[int], global_stages: Sequence[int], local: int = 2) -> list[list[int | None]]:
    """Where the official configs scan globally: the blocks of `global_stages`, past the seventh block
    only every seventh; everything else scans locally in chunks of `local`."""
    return [[None if i in global_stages and (j < 7 or (j + 1) % 7 == 0) else local for j in range(depth)]
            for i, depth in enumerate(depths)]


def _build(overrides: dict, *, global_stages: Sequence[int], **preset) -> GSPNBackbone:
    config = {**preset, **overrides}
    config.setdefault("chunks", official_chunks(config["depths"], global_stages))
    return GSPNBackbone(**config)


@register_model
def gspn_t(**overrides) -> GSPNBackbone:
    """GSPN-T: 31.5M parameters, 5.3 GMACs at 224."""
    return _build(overrides, dims=96, depths=(2, 2, 7, 2), d_state=8, global_stages=(2, 3), drop_path_rate=0.2)


@register_model
def gspn_s(**overrides) -> GSPNBackbone:
    """GSPN-S: 50.8M parameters."""
    return _build(overrides, dims=108, depths=(5, 5, 10, 2), d_state=16, global_stages=(3,), drop_path_rate=0.4)


@register_model
def gspn_b(**overrides) -> GSPNBackbone:
    """GSPN-B: 93.1M parameters."""
    return _build(overrides, dims=120, depths=(4, 4, 15, 4), d_state=8, global_stages=(2, 3), drop_path_rate=0.5)


# GSPN-2: compact propagation (2 proxy channels, one affinity per direction) and a local perception
# unit in every block. Widths and depths are ours, chosen to land on the reported 24M / 50M / 89M.
GSPN2 = dict(compact=True, proxy_channels=2, lpu=True)


@register_model
def gspn2_t(**overrides) -> GSPNBackbone:
    """GSPN-2-T: 24M parameters."""
    return _build(overrides, dims=88, depths=(2, 2, 6, 2), global_stages=(2, 3), drop_path_rate=0.2, **GSPN2)


@register_model
def gspn2_s(**overrides) -> GSPNBackbone:
    """GSPN-2-S: 50M parameters."""
    return _build(overrides, dims=108, depths=(4, 4, 12, 2), global_stages=(3,), drop_path_rate=0.4, **GSPN2)


@register_model
def gspn2_b(**overrides) -> GSPNBackbone:
    """GSPN-2-B: 89M parameters."""
    return _build(overrides, dims=120, depths=(4, 4, 15, 4), global_stages=(2, 3), drop_path_rate=0.5, **GSPN2)


@register_model
def gspn_nano(**overrides) -> GSPNBackbone:
    """A few hundred thousand parameters: CPU demos and tests at 32-64 pixels."""
    return _build(overrides, dims=16, depths=(1, 1, 2, 1), d_state=4, global_stages=(2, 3))
