"""The GSPN mixer against attention and a depthwise conv: `python -m gspn.benchmarks.mixer [--quick]`.

Everything is measured side by side in one run (variants interleaved, the median of the repeats), so
the ratios hold on a busy machine even where the absolute times do not:

1. Layers of equal width (96, batch 2) at 14^2 ... 160^2 tokens: the GSPN-1 mixer (per-channel) and
   the GSPN-2 mixer (compact), each with the op's default backend (the fused kernel) and with its
   reference backend (the pure-PyTorch definition, the fallback without a compiler), SDPA attention
   (qkv, 3 heads, proj) and a depthwise 7x7 conv.
   Forward and forward + backward in ms, the peak memory of a forward + backward over the memory
   before it, the bytes saved for backward (unique storages handed to autograd, parameters and the
   input excepted) and, for the fused GSPN-1 mixer, the share of the step spent in the op itself.
2. gspn_t and gspn2_t training steps (forward, cross-entropy, backward) at 224 x 224, batch 8:
   images per second and peak memory per step, fused kernel and reference backend.
3. The profile of one gspn_t training step, by kind of work, fused kernel and reference backend.

Peak memory is the process' peak resident set (VmHWM, reset through /proc/self/clear_refs) over its
resident set before the step, the heap trimmed first (malloc_trim), so this follows the tensors.
"""

import argparse
import copy
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from gspn.nn import GSPNMixer, SelfAttention, configure_mixers

from .common import median_seconds, peak_memory, print_table

WIDTH, BATCH, HEADS = 96, 2, 3
SIZES = (14, 28, 56, 112, 160)
QUICK_SIZES = (14, 28)
MODELS = ("gspn_t", "gspn2_t")
MODEL_BATCH, MODEL_SIZE = 8, 224


def layers(width: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    gspn1, gspn2 = GSPNMixer(width), GSPNMixer(width, compact=True)
    reference1, reference2 = (configure_mixers(copy.deepcopy(m), backend="reference") for m in (gspn1, gspn2))
    return {"GSPN-1 mixer, fused": gspn1, "GSPN-1 mixer, reference": reference1,
            "GSPN-2 mixer, fused": gspn2, "GSPN-2 mixer, reference": reference2,
            f"attention (SDPA, {HEADS} heads)": SelfAttention(width, HEADS),
            "depthwise conv 7x7": nn.Conv2d(width, width, 7, padding=3, groups=width)}


def saved_bytes(fn, exclude: list[torch.Tensor]) -> int:
    """Bytes of the unique storages autograd keeps for backward while fn() builds its graph."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def op_share(step) -> float:
    """The share of step()'s CPU time spent in the gspn ops themselves (self time of gspn:: events)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ours = sum(e.self_cpu_time_total for e in events if e.key.startswith("gspn"))
    return ours / total if total else 0.0


def layer_table(sizes, repeats: int, budget_s: float) -> None:
    rows = []
    for size in sizes:
        mods = layers(WIDTH)
        x = torch.randn(BATCH, WIDTH, size, size, requires_grad=True)
        grad = torch.randn(BATCH, WIDTH, size, size)

        def forward(m):
            with torch.no_grad():
                m(x)

        def step(m):
            torch.autograd.backward(m(x), grad)

        fwd = median_seconds({n: (lambda m=m: forward(m)) for n, m in mods.items()}, repeats, budget_s=budget_s)
        both = median_seconds({n: (lambda m=m: step(m)) for n, m in mods.items()}, repeats, budget_s=budget_s)
        for name, m in mods.items():
            params = list(m.parameters())
            share = op_share(lambda: step(m)) if "fused" in name else None
            rows.append({
                "tokens": f"{size}^2", "layer": name,
                "fwd ms": f"{fwd[name] * 1e3:.1f}", "fwd+bwd ms": f"{both[name] * 1e3:.1f}",
                "peak MB": _mb_over(peak_memory(lambda: step(m))),
                "saved MB": _mb(saved_bytes(lambda: m(x), params + [x])),
                "op share": f"{100 * share:.0f}%" if share is not None else "-",
            })
            m.zero_grad(set_to_none=True)
            x.grad = None
        attention = both[f"attention (SDPA, {HEADS} heads)"]
        print(f"{size}^2: fwd+bwd vs attention: GSPN-1 fused {attention / both['GSPN-1 mixer, fused']:.2f}x faster, "
              f"GSPN-2 fused {attention / both['GSPN-2 mixer, fused']:.2f}x; fused vs reference: GSPN-1 "
              f"{both['GSPN-1 mixer, reference'] / both['GSPN-1 mixer, fused']:.2f}x, GSPN-2 "
              f"{both['GSPN-2 mixer, reference'] / both['GSPN-2 mixer, fused']:.2f}x", flush=True)
    print_table(rows, f"Layers of width {WIDTH}, batch {BATCH}, {torch.get_num_threads()} threads (median times)",
                markdown=True)


def _mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _mb_over(memory: tuple[int, int] | None) -> str:
    """The peak over the memory before, from peak_memory, in MB."""
    return _mb(None if memory is None else memory[1] - memory[0])


def model_step(model, images, labels):
    def step():
        F.cross_entropy(model(images), labels).backward()
        model.zero_grad(set_to_none=True)
    return step


def model_table(names, batch: int, size: int, repeats: int, budget_s: float) -> dict:
    from gspn.models import create_model

    rows, steps = [], {}
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 1000, (batch,))
    for name in names:
        torch.manual_seed(0)
        fused = create_model(name).train()
        reference = configure_mixers(copy.deepcopy(fused), backend="reference")
        variants = {f"{name}, fused": model_step(fused, images, labels),
                    f"{name}, reference": model_step(reference, images, labels)}
        steps.update(variants)
        times = median_seconds(variants, repeats, budget_s=budget_s)
        for variant, fn in variants.items():
            rows.append({"model": variant, "step s": f"{times[variant]:.2f}",
                         "images/s": f"{batch / times[variant]:.2f}", "peak MB per step": _mb_over(peak_memory(fn))})
        print(f"{name}: fused {times[f'{name}, reference'] / times[f'{name}, fused']:.2f}x the reference "
              "backend's throughput", flush=True)
    print_table(rows, f"Training steps (forward, cross-entropy, backward) at {size} x {size}, batch {batch}",
                markdown=True)
    return steps


KINDS = ("propagation op (gspn kernels)", "copies, fills, stack/cat, contiguous, einsum", "convolutions",
         "elementwise and the rest")
COPY_OPS = ("copy_", "zero_", "zeros", "fill_", "cat", "stack", "clone", "contiguous", "einsum", "bmm", "_to_copy",
            "to", "empty", "empty_like", "empty_strided", "zeros_like", "new_zeros", "new_empty", "slice_backward",
            "select_backward", "unbind_backward", "as_strided_scatter", "index_put_", "expand", "reshape", "view")


def kind_of(name: str) -> str:
    if name.startswith("gspn"):
        return KINDS[0]
    op = name.removeprefix("aten::")
    if op in COPY_OPS:
        return KINDS[1]
    if "conv" in op or "mkldnn" in op:
        return KINDS[2]
    return KINDS[3]


def profile_table(steps: dict) -> None:
    rows = []
    for variant, step in steps.items():
        step()  # warm
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        shares = defaultdict(float)
        for e in prof.key_averages():
            shares[kind_of(e.key)] += e.self_cpu_time_total
        total = sum(shares.values())
        rows.append({"step": variant, **{k: f"{100 * shares[k] / total:.0f}%" for k in KINDS}})
    print_table(rows, "Profile of one training step (self CPU time by kind of op)", markdown=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="comma-separated token grid sides, default 14,28,56,112,160")
    parser.add_argument("--models", help=f"comma-separated, default {','.join(MODELS)}; 'none' to skip")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per variant beyond which repeats stop")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile of the model steps")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (two sizes, a tiny model)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); on a machine shared with "
                        "other busy processes one thread gives steadier ratios than an oversubscribed pool")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    print(f"gspn mixer benchmark: {torch.get_num_threads()} threads, torch {torch.__version__}")
    layer_table(sizes, 2 if args.quick else args.repeats, args.budget)
    models = MODELS if args.models is None else [m for m in args.models.split(",") if m and m != "none"]
    if args.quick:
        steps = model_table(["gspn_nano"], 2, 64, 2, args.budget) if args.models is None else {}
    elif models:
        steps = model_table(models, MODEL_BATCH, MODEL_SIZE, max(2, args.repeats // 2), args.budget * 3)
    else:
        steps = {}
    if steps and not args.no_profile:
        profile_table({k: v for k, v in steps.items() if k.startswith(("gspn_t", "gspn_nano"))})


if __name__ == "__main__":
    main()
