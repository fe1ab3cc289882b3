"""Denoiser sizes and speed: parameters and GMACs per forward at 256 x 256 (latent 32 x 32) of the
GSPN-B/2, L/2, XL/2 presets next to DiT's reported figures, and forward throughput of the demo's
denoiser at 32 x 32 on this machine's CPU.

    python -m gspn.benchmarks.generation [--skip-throughput]

GMACs count one per multiply-add (DiT's "Gflops" come from fvcore, which counts the same way).
"""

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from gspn.models import count_params, create_model

from .common import median_seconds, print_table

DIT = {"DiT-B/2": (130, 23.0), "DiT-XL/2": (675, 119.0)}  # reported params (M), Gflops at 256
PAPER = {"b": 137, "l": 443, "xl": 690}  # reported parameters of GSPN-B/2, L/2, XL/2, in 2^20 units


def size_and_macs(name: str, conditioning: str, latent: int = 32) -> tuple[int, float]:
    with torch.device("meta"):
        model = create_model(name, conditioning=conditioning)
        x, t, y = torch.empty(1, 4, latent, latent), torch.zeros(1), torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, y)
    return count_params(model), counter.get_total_flops() / 2e9


def throughput(batch: int = 64, repeats: int = 3) -> float:
    model = create_model("gspn_denoiser_nano4", hidden=96, depth=6).eval()
    x, t, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 1000, (batch,)), torch.randint(0, 9, (batch,))
    with torch.no_grad():
        seconds = median_seconds({"forward": lambda: model(x, t, y)}, repeats)["forward"]
    return batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in ("b", "l", "xl"):
        for conditioning in ("additive", "adaln"):
            params, macs = size_and_macs(f"gspn_denoiser_{size}2", conditioning)
            rows.append({"model": f"GSPN-{size.upper()}/2", "conditioning": conditioning,
                         "params (M)": f"{params / 1e6:.1f}", "params (2^20)": f"{params / 2**20:.1f}",
                         "paper": PAPER[size], "GMACs@256": f"{macs:.1f}"})
    for name, (params, gflops) in DIT.items():
        rows.append({"model": name, "conditioning": "adaLN-Zero", "params (M)": params, "params (2^20)": "",
                     "paper": "", "GMACs@256": f"{gflops:.1f}"})
    print_table(rows)
    if not args.skip_throughput:
        print(f"\ndemo denoiser (nano4, hidden 96, depth 6), forward at 32 x 32, batch 64, "
              f"{torch.get_num_threads()} threads: {throughput():.1f} images/s")


if __name__ == "__main__":
    main()
