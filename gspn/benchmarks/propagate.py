"""Time the propagation backends: `python -m gspn.benchmarks.propagate [--device cuda] [--quick] [--plan]`.

For every backend, shape and weight mode (per-channel G = C, shared G = 1) it prints the median time
of forward (no autograd), backward alone and forward + backward (one training step), the achieved
bandwidth counted from the minimal bytes, and that as a percentage of the copy bandwidth measured
in the same run. Baselines: "reference-autograd" is plain torch autograd through a per-line loop with
pads and a final stack (`autograd_scan`; gspn.ops.reference.forward writes its output in place and
so cannot be differentiated by autograd); on CUDA "sdpa" is torch's scaled_dot_product_attention over the same number of
tokens (H * W tokens, SDPA_HEADS heads of SDPA_HEAD_DIM) for comparison.

`--plan` runs nothing: it prints the CUDA kernels' launch plans and their modelled share of copy
bandwidth on an H100 (gspn.benchmarks.cuda_model), a model and not a measurement.
"""

import argparse
import math

import torch
import torch.nn.functional as F

from gspn.ops import DIRECTIONS, available_backends, propagate

from . import cuda_model
from .common import median_seconds, print_table

CPU_SHAPES = [(8, 96, 56, 56), (8, 192, 28, 28), (8, 384, 14, 14), (2, 8, 256, 256), (1, 8, 1024, 1024)]
CUDA_SHAPES = [(16, 8, 1024, 1024), (256, 1, 1024, 1024), (32, 196, 32, 32), (1, 768, 64, 64), (1, 1152, 64, 64),
               (1, 32, 128, 128), (1, 64, 256, 256), (8, 64, 256, 256), (1, 128, 512, 512)]
QUICK_SHAPES = [(2, 8, 32, 32)]
AUTOGRAD = "reference-autograd"
SDPA, SDPA_HEADS, SDPA_HEAD_DIM = "sdpa", 4, 64
SLOW_LIMIT = 2**22  # elements: above this the python-loop backends would take minutes
SDPA_FLOP_LIMIT = 1e14  # attention over a million tokens would take hours
WARMUP = 2


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes per second of a large tensor copy_ (read + write), well beyond the caches."""
    src = torch.randn(2**28 if device.type == "cuda" else 2**26, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / median_seconds({"copy": lambda: dst.copy_(src)}, repeats, warmup=WARMUP,
                                           device=device)["copy"]


TO_LR = {"lr": lambda t: t, "rl": lambda t: t.flip(3), "tb": lambda t: t.transpose(2, 3),
         "bt": lambda t: t.flip(2).transpose(2, 3)}
FROM_LR = {"lr": lambda t: t, "rl": lambda t: t.flip(3), "tb": lambda t: t.transpose(2, 3),
           "bt": lambda t: t.transpose(2, 3).flip(2)}


def autograd_scan(x, lam, a, b, c, direction, chunk):
    """The baseline: docs/design.md §1.1 as a loop over the columns of the transformed input, for autograd."""
    B, C, G = x.shape[0], x.shape[1], a.shape[1]
    v = TO_LR[direction](lam * x)
    v = v.reshape(B, G, C // G, *v.shape[2:])
    a, b, c = (TO_LR[direction](t).unsqueeze(2) for t in (a, b, c))
    columns = []
    for j in range(v.shape[-1]):
        if j == 0 or (chunk and j % chunk == 0):
            h = v[..., j]
        else:
            up, down = F.pad(h, (1, 0))[..., :-1], F.pad(h, (0, 1))[..., 1:]
            h = v[..., j] + a[..., j] * up + b[..., j] * h + c[..., j] * down
        columns.append(h)
    return FROM_LR[direction](torch.stack(columns, -1).reshape(B, C, *v.shape[-2:]))


def scan_case(backend, shape, groups, dtype, device, direction, chunk):
    """(forward, step, backward alone, bytes forward, bytes backward) for one propagation case."""
    B, C, H, W = shape
    gen = torch.Generator(device=device).manual_seed(0)
    x, lam = (torch.randn(shape, generator=gen, device=device).to(dtype) for _ in range(2))
    a, b, c = (torch.rand(B, groups, H, W, generator=gen, device=device).div(3).to(dtype) for _ in range(3))
    inputs = [t.requires_grad_() for t in (x, lam, a, b, c)]
    if backend == AUTOGRAD:
        def run(*t):
            return autograd_scan(*t, direction, chunk)
    else:
        def run(*t):
            return propagate(*t, direction=direction, chunk=chunk, backend=backend)
    return run_case(run, inputs, bytes_of(x) * 3 + bytes_of(a) * 3, bytes_of(x) * 6 + bytes_of(a) * 6)


def sdpa_case(shape, dtype, device):
    B, _, H, W = shape
    q, k, v = (torch.randn(B, SDPA_HEADS, H * W, SDPA_HEAD_DIM, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))
    return run_case(F.scaled_dot_product_attention, [q, k, v], bytes_of(q) * 4, bytes_of(q) * 8)


def bytes_of(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def run_case(fn, inputs, fwd_bytes, bwd_bytes):
    """Forward without autograd, a training step (forward + backward), backward alone through a kept graph."""
    def forward():
        with torch.no_grad():
            fn(*inputs)

    def step():
        out = fn(*inputs)
        torch.autograd.grad(out, inputs, grad)

    out = fn(*inputs)
    grad = torch.randn_like(out)
    return forward, step, lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True), fwd_bytes, bwd_bytes


def skipped(backend, shape, mode) -> bool:
    if backend == SDPA:
        B, _, H, W = shape
        return mode == "shared" or 4 * B * SDPA_HEADS * (H * W) ** 2 * SDPA_HEAD_DIM > SDPA_FLOP_LIMIT
    return backend in ("reference", AUTOGRAD) and math.prod(shape) > SLOW_LIMIT


def print_plan() -> None:
    """The launch plans of the CUDA kernels and a bandwidth model of them (gspn.benchmarks.cuda_model)."""
    device = cuda_model.H100
    print(f"MODEL, not a measurement: the CUDA kernels' launch plans (direction lr, global scan) on a modelled "
          f"{device.name} ({device.sms} SMs, copy bandwidth {device.copy_bandwidth / 1e12:.1f} TB/s, "
          f"DRAM latency {device.latency * 1e9:.0f} ns; see gspn/benchmarks/cuda_model.py and docs/cuda.md). "
          "No GPU measurement exists yet.")
    print("bound: the least time any kernel could take on the same model (one DRAM latency, then the copy floor "
          "or L of the cheapest possible scan steps, whichever is longer).")
    print_table(cuda_model.table())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backends", help="comma-separated; default: every available backend and the baselines")
    parser.add_argument("--shapes", help="comma-separated BxCxHxW, e.g. 8x96x56x56; default: the device's list")
    parser.add_argument("--direction", choices=DIRECTIONS, default="lr")
    parser.add_argument("--chunk", type=int, default=None, help="local scan chunk (default: global)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--plan", action="store_true",
                        help="print the CUDA kernels' launch plans and their modelled bandwidth (no GPU needed)")
    args = parser.parse_args(argv)
    if args.plan:
        print_plan()
        return

    device = torch.device(args.device)
    if args.backends:
        backends = args.backends.split(",")
    else:
        backends = available_backends(device) + [AUTOGRAD] + ([SDPA] if device.type == "cuda" else [])
    if args.shapes:
        shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    else:
        shapes = QUICK_SHAPES if args.quick else CUDA_SHAPES if device.type == "cuda" else CPU_SHAPES
    repeats = 2 if args.quick else args.repeats
    dtypes = [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]

    copy = copy_bandwidth(device, repeats)
    print(f"device {device}, direction {args.direction}, chunk {args.chunk}, threads {torch.get_num_threads()}, "
          f"copy bandwidth {copy / 1e9:.1f} GB/s; median of {repeats} runs; times in ms")
    rows, steps = [], {}
    for shape in shapes:
        for groups, mode in ((shape[1], "per-channel"), (1, "shared")):
            for dtype in dtypes:
                for backend in (b for b in backends if not skipped(b, shape, mode)):
                    if backend == SDPA:
                        *timed, fwd_bytes, bwd_bytes = sdpa_case(shape, dtype, device)
                    else:
                        *timed, fwd_bytes, bwd_bytes = scan_case(backend, shape, groups, dtype, device,
                                                                 args.direction, args.chunk)
                    times = median_seconds(dict(zip(("fwd", "step", "bwd"), timed)), repeats, warmup=WARMUP,
                                           device=device)
                    t_fwd, t_step, t_bwd = times["fwd"], times["step"], times["bwd"]
                    case = ("x".join(map(str, shape)), mode, str(dtype).removeprefix("torch."))
                    steps[case, backend] = t_step
                    rows.append({
                        "backend": backend, "shape": case[0], "weights": case[1], "dtype": case[2],
                        "fwd": f"{t_fwd * 1e3:.2f}", "fwd GB/s": f"{fwd_bytes / t_fwd / 1e9:.1f}",
                        "fwd %copy": f"{100 * fwd_bytes / t_fwd / copy:.0f}",
                        "bwd": f"{t_bwd * 1e3:.2f}", "bwd GB/s": f"{bwd_bytes / t_bwd / 1e9:.1f}",
                        "bwd %copy": f"{100 * bwd_bytes / t_bwd / copy:.0f}",
                        "fwd+bwd": f"{t_step * 1e3:.2f}",
                    })
    for row in rows:
        case = (row["shape"], row["weights"], row["dtype"])
        baseline = steps.get((case, AUTOGRAD))
        row["fwd+bwd speedup vs autograd"] = f"{baseline / steps[case, row['backend']]:.1f}x" if baseline else "-"
    print_table(rows)


if __name__ == "__main__":
    main()
