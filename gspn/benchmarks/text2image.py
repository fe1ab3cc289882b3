"""Stable Diffusion self-attention (`attn1`) against its GSPN replacements:
`python -m gspn.benchmarks.text2image [--device cuda] [--quick]`.

Three tables, each under the protocol printed first (device, dtype, threads, attention backend, repeats):

1. Layers: one `attn1` (diffusers' `Attention`, SDPA) against `GSPNSelfAttention` GSPN-1 and GSPN-2
   (proxy C/8, global scans and the published chunk 4) at every self-attention shape of the real SD-1.5
   and SD-XL UNets (channels and heads read from the UNets built from the configs below), for latents
   of 32^2 and up: forward and forward + backward times, their peak memory, FLOPs and the speedup over
   attention.
2. FLOPs of one whole-UNet forward (batch 1, 77 text tokens) of the real SD-1.5 and SD-XL configs at
   512 to 16K px (latent = px / 8), counted by torch.utils.flop_counter.FlopCounterMode on the meta
   device (nothing is allocated; there SDPA runs as its math decomposition, whose two matmuls are
   counted; on the CPU the fused SDPA kernel has no FLOP formula): the attn1 and attn2 shares, the
   UNet with every attn1 costed as its GSPN replacement, and the Amdahl bounds: the speedup if attn1
   cost GSPN's FLOPs, and if it cost nothing.
3. Whole-UNet forward time, the real SD-1.5 config with random weights (or a tiny one with --quick):
   the UNet with its original attn1 and converted by gspn.t2i.convert to GSPN-1 (switched by
   gspn.t2i.detach / attach), and a copy sharing every weight converted to GSPN-2 (chunk 4), the three
   taking turns; time ratios against the FLOP ratios of table 2.

A layer call (forward + backward) or UNet forward whose estimated time passes --max-seconds is skipped
and says so; the estimate is its FLOPs at the rate the same call reached at a smaller size, or else at
the rate of a plain matmul.

Then the targets (GSPN-2 layer >= 20x SDPA at 128^2 tokens; SD-1.5 forward at 1024 px within 15% of
its FLOP ratio), met or not.

Memory: on CUDA the peak of torch.cuda.max_memory_allocated over the memory allocated before the
call; on the CPU the process' peak resident set over its resident set before the call
(gspn.benchmarks.common.peak_memory). Each call's first (warm-up) run is the one measured.
"""

import argparse
import copy
import gc
import itertools
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..ops import flops as _flops  # noqa: F401  (the propagation ops' FLOP formulas)
from .common import median_seconds, peak_memory, print_table

# The published UNet configs (unet/config.json of stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0),
# keys at diffusers' defaults left out. SD-1.5's `attention_head_dim` is diffusers' legacy name for the
# number of heads (8 at every level: head dims 40, 80, 160); SD-XL's (5, 10, 20) heads are 64 wide.
SD15 = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1)
SDXL = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=2048, attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1)
CONFIGS = {"SD-1.5": SD15, "SD-XL": SDXL}
PUBLISHED_PARAMS = {"SD-1.5": 859_520_964, "SD-XL": 2_567_463_684}

VARIANTS = ("gspn1", "gspn2")
NAMES = {"gspn1": "GSPN-1", "gspn2": "GSPN-2"}
PUBLISHED_CHUNK = 4
TEXT_TOKENS = 77
LATENTS, QUICK_LATENTS = (32, 64, 128, 256), (16,)
PIXELS, QUICK_PIXELS = (512, 1024, 2048, 4096, 8192, 16384), (512,)
UNET_LATENTS, QUICK_UNET_LATENTS = (64, 128), (16,)
LAYER_TARGET = ("SD-1.5", 320, 128, 20.0)  # model, channels, tokens side, GSPN-2 speedup over SDPA
UNET_TARGET = (128, 0.15)  # SD-1.5 latent (1024 px), largest relative gap between time and FLOP ratios
SKIPPED = "skipped: over --max-seconds"


# --- building UNets and counting FLOPs -------------------------------------------------------------

def build_unet(config, device="meta", dtype=torch.float32):
    """A UNet2DConditionModel of `config` (a dict or a UNet's .config), random weights; on meta nothing is allocated."""
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel.from_config(dict(config)).eval()
    return unet if dtype == torch.float32 else unet.to(dtype)


def unet_inputs(unet, latent: int, batch: int = 1) -> dict:
    """The forward's keyword arguments: noise latents, a timestep, text states (and SD-XL's pooled text and sizes)."""
    config, p = unet.config, next(unet.parameters())
    kwargs = dict(sample=torch.randn(batch, config.in_channels, latent, latent, device=p.device, dtype=p.dtype),
                  timestep=torch.tensor(500, device=p.device),
                  encoder_hidden_states=torch.randn(batch, TEXT_TOKENS, config.cross_attention_dim, device=p.device,
                                                    dtype=p.dtype))
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = dict(text_embeds=torch.randn(batch, pooled, device=p.device, dtype=p.dtype),
                                           time_ids=torch.randn(batch, 6, device=p.device, dtype=p.dtype))
    return kwargs


def self_attention(unet) -> dict:
    """The UNet's self-attention layers by name: diffusers' `Attention` modules that are not cross-attention."""
    from diffusers.models.attention_processor import Attention

    return {n: m for n, m in unet.named_modules() if isinstance(m, Attention) and not m.is_cross_attention}


@dataclass(frozen=True)
class Layer:
    """One self-attention layer of a UNet forward: its channels, heads and token map."""
    name: str
    channels: int
    heads: int
    side: int  # the token map is side x side (square latents only)
    flops: int  # of the attn1 module in the forward


@dataclass(frozen=True)
class Census:
    """FLOPs of one UNet forward and where they go."""
    total: int
    attn1: list[Layer]
    attn2: int

    @property
    def attn1_flops(self) -> int:
        return sum(layer.flops for layer in self.attn1)

    def gspn_flops(self, variant: str) -> int:
        """The forward's FLOPs with every attn1 costed as its GSPN replacement."""
        return self.total - self.attn1_flops + sum(gspn_flops(layer.channels, variant, layer.side)
                                                         for layer in self.attn1)


def census(config, latent: int, batch: int = 1) -> Census:
    """Count one forward of a UNet of `config` at `latent` on the meta device, by module."""
    unet = build_unet(config)
    tokens = {}

    def count_tokens(name):
        def hook(module, args):
            tokens[name] = args[0].shape[1]
        return hook

    hooks = [m.register_forward_pre_hook(count_tokens(name)) for name, m in self_attention(unet).items()]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(**unet_inputs(unet, latent, batch))
    for hook in hooks:
        hook.remove()
    by_module = counter.get_flop_counts()
    root = type(unet).__name__

    def flops(name: str) -> int:
        return sum(by_module.get(f"{root}.{name}", {}).values())

    layers = []
    for name, m in self_attention(unet).items():
        side = math.isqrt(tokens[name])
        assert side * side == tokens[name], f"{name}: {tokens[name]} tokens is not a square map"
        layers.append(Layer(name, m.query_dim, m.heads, side, flops(name)))
    attn2 = sum(flops(n) for n, _ in unet.named_modules() if n.endswith("attn2"))
    return Census(counter.get_total_flops(), layers, attn2)


def layer_flops(module: torch.nn.Module, channels: int, side: int, batch: int = 1) -> int:
    """FLOPs of one forward of a self-attention module (built on meta) over a side x side token map."""
    if hasattr(module, "hw"):
        module.hw = (side, side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.empty(batch, side * side, channels, device="meta"))
    return counter.get_total_flops()


@cache
def gspn_flops(channels: int, variant: str, side: int) -> int:
    """FLOPs of one GSPNSelfAttention forward (proxy C/8; chunking does not change the count)."""
    from gspn.t2i.modules import GSPNSelfAttention

    with torch.device("meta"):
        module = GSPNSelfAttention(channels, variant, PUBLISHED_CHUNK)
    return layer_flops(module, channels, side)


def amdahl(share: float, cost: float = 0.0) -> float:
    """Whole-model speedup when a part taking `share` of the work costs `cost` times as much as before."""
    return 1.0 / (1.0 - share + share * cost)


# --- measuring --------------------------------------------------------------------------------------

def peak_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak memory of fn() over the memory before it: CUDA's allocator on a GPU, the resident set on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    memory = peak_memory(fn)
    return None if memory is None else memory[1] - memory[0]


def timed(fns: dict[str, Callable[[], object]], repeats: int, budget_s: float, device: torch.device
          ) -> tuple[dict[str, float], dict[str, int | None]]:
    """Median seconds of each fn (taking turns, common.median_seconds) and the peak memory of its warm-up run."""
    memory: dict[str, int | None] = {}

    def measuring(name, fn):
        def run():
            if name in memory:
                return fn()
            memory[name] = peak_bytes(fn, device)
        return run

    seconds = median_seconds({n: measuring(n, fn) for n, fn in fns.items()}, repeats, budget_s=budget_s,
                             device=device)
    return seconds, memory


class Pace:
    """Estimated seconds of a call: its FLOPs at the rate the same call reached at a smaller size, or else at
    the rate of a plain matmul on this device (optimistic, so only the clearly hopeless is skipped)."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        a = torch.randn(512, 512, device=device, dtype=dtype)
        seconds = median_seconds({"mm": lambda: a @ a}, 3, device=device)["mm"]
        self.default = 2 * 512**3 / seconds
        self.rates: dict = {}

    def seconds(self, key, flops: int) -> float:
        return flops / self.rates.get(key, self.default)

    def record(self, key, flops: int, seconds: float) -> None:
        self.rates[key] = flops / seconds


class _OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def attention_backend(device: torch.device, dtype: torch.dtype, channels: int = 320, heads: int = 8) -> str:
    """The diffusers processor of an attn1 and the aten kernel its SDPA dispatches to here (at 64 tokens)."""
    attention = make_attention(channels, heads, device, dtype)
    with _OpNames() as ops, torch.no_grad():
        attention(torch.randn(1, 64, channels, device=device, dtype=dtype))
    kernels = [n for n in ops.names if "attention" in n or "softmax" in n]
    return f"diffusers {type(attention.processor).__name__} -> {kernels[0] if kernels else 'unknown'}"


# --- table 1: layers --------------------------------------------------------------------------------

def make_attention(channels: int, heads: int, device, dtype):
    """A self-attention as SD's BasicTransformerBlock builds attn1: no q/k/v bias, output bias."""
    from diffusers.models.attention_processor import Attention

    with torch.device(device):
        return Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=False, out_bias=True
                         ).to(dtype)


def make_layers(channels: int, heads: int, chunks, device, dtype) -> dict[str, torch.nn.Module]:
    """attn1 and its GSPN replacements, each GSPN variant with every chunk of `chunks`."""
    from gspn.t2i.modules import GSPNSelfAttention

    torch.manual_seed(0)
    layers = {f"attn1 (SDPA, {heads} heads x {channels // heads})": make_attention(channels, heads, device, dtype)}
    with torch.device(device):
        for variant in VARIANTS:
            for chunk in chunks:
                layers[f"{NAMES[variant]}, chunk {chunk or 'none'}"] = GSPNSelfAttention(channels, variant,
                                                                                          chunk).to(dtype)
    return layers


@cache
def published_census(model: str, latent: int) -> Census:
    return census(CONFIGS[model], latent)


def layer_shapes() -> list[tuple[str, int, int, int]]:
    """(model, channels, heads, latent downscale) of every distinct self-attention layer of the real UNets."""
    shapes = {}
    for model in CONFIGS:
        for layer in published_census(model, 64).attn1:
            shapes[model, layer.channels, layer.heads, 64 // layer.side] = None
    return list(shapes)


def layer_tables(latents, chunks, repeats: int, budget_s: float, max_seconds: float, device, dtype,
                 pace: Pace) -> dict:
    """Table 1, one table per layer shape; returns {(model, channels, side): {layer: Measured}}."""
    results = {}
    for model, channels, heads, down in layer_shapes():
        rows = []
        for side in sorted({latent // down for latent in latents if latent >= down}):
            flops = {name: layer_flops(m, channels, side)
                     for name, m in make_layers(channels, heads, chunks, "meta", torch.float32).items()}
            estimate = {name: pace.seconds((model, channels, name), 3 * f) for name, f in flops.items()}  # bwd = 2 fwd
            layers = {name: m for name, m in make_layers(channels, heads, chunks, device, dtype).items()
                      if estimate[name] <= max_seconds}
            measured = measure_layers(layers, channels, side, repeats, budget_s, device, dtype)
            results[model, channels, side] = measured
            attention = measured.get(next(iter(flops)))
            for name in flops:
                row = {"latent": f"{side * down}^2", "tokens": f"{side}^2", "layer": name,
                       "GFLOP fwd": f"{flops[name] / 1e9:.2f}"}
                if name not in measured:
                    rows.append({**row, "fwd ms": f"{SKIPPED} (est. fwd+bwd {estimate[name]:.0f} s)",
                                 **dict.fromkeys(("fwd+bwd ms", "fwd peak MB", "fwd+bwd peak MB", "x attn1 fwd",
                                                  "x attn1 fwd+bwd"), "")})
                    continue
                m = measured[name]
                pace.record((model, channels, name), 3 * flops[name], m.step)
                rows.append({**row, "fwd ms": f"{m.forward * 1e3:.1f}", "fwd+bwd ms": f"{m.step * 1e3:.1f}",
                             "fwd peak MB": _mb(m.forward_memory), "fwd+bwd peak MB": _mb(m.step_memory),
                             "x attn1 fwd": _ratio(attention and attention.forward, m.forward),
                             "x attn1 fwd+bwd": _ratio(attention and attention.step, m.step)})
            print(f"{model} C={channels} at {side}^2 tokens done", flush=True)
        print_table(rows, f"Layer: {model} self-attention, C={channels}, {heads} heads x {channels // heads}, "
                          f"tokens = (latent/{down})^2, batch 1 (median times)", markdown=True)
    return results


@dataclass(frozen=True)
class Measured:
    """A layer's median seconds and peak bytes, forward (no grad) and forward + backward."""
    forward: float
    forward_memory: int | None
    step: float
    step_memory: int | None


def measure_layers(layers: dict, channels: int, side: int, repeats: int, budget_s: float, device, dtype
                   ) -> dict[str, Measured]:
    """Time the layers (taking turns) on random tokens of a side x side map, batch 1, and their peak memory."""
    x = torch.randn(1, side * side, channels, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn_like(x)
    for m in layers.values():
        if hasattr(m, "hw"):
            m.hw = (side, side)

    def forward(m):
        with torch.no_grad():
            m(x)

    def step(m):
        torch.autograd.backward(m(x), grad)
        m.zero_grad(set_to_none=True)
        x.grad = None

    fwd, fwd_memory = timed({n: (lambda m=m: forward(m)) for n, m in layers.items()}, repeats, budget_s, device)
    both, both_memory = timed({n: (lambda m=m: step(m)) for n, m in layers.items()}, repeats, budget_s, device)
    return {n: Measured(fwd[n], fwd_memory[n], both[n], both_memory[n]) for n in layers}


# --- table 2: whole-UNet FLOPs ---------------------------------------------------------------------

def flop_table(pixels) -> dict:
    """Table 2; returns {(model, latent): Census}."""
    rows, censuses = [], {}
    for model in CONFIGS:
        for px in pixels:
            c = censuses[model, px // 8] = published_census(model, px // 8)
            share = c.attn1_flops / c.total
            row = {"model": model, "px (latent)": f"{px} ({px // 8})", "TFLOP": _tflop(c.total),
                   "attn1 share": f"{100 * share:.1f}%", "attn2 share": f"{100 * c.attn2 / c.total:.1f}%"}
            for variant in VARIANTS:
                student = c.gspn_flops(variant)
                row[f"{NAMES[variant]} TFLOP"] = _tflop(student)
                row[f"{NAMES[variant]} bound"] = f"{c.total / student:.2f}x"
            row["attn1 free bound"] = f"{amdahl(share):.2f}x"
            rows.append(row)
    print_table(rows, "Whole-UNet FLOPs, one forward, batch 1, 77 text tokens (meta device); bound = Amdahl "
                      "speedup with every attn1 at GSPN's FLOPs (proxy C/8), or free", markdown=True)
    return censuses


# --- table 3: whole-UNet time -----------------------------------------------------------------------

def shared_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `module` (its own submodules and hooks) whose parameters and buffers are the original's."""
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def unet_table(config, model: str, latents, repeats: int, budget_s: float, max_seconds: float, device, dtype,
               pace: Pace) -> dict:
    """Table 3: one UNet's forward with its attn1 and with GSPN-1 / GSPN-2 (chunk 4) in their place, the variants
    taking turns; returns {(latent, variant): (time ratio, FLOP ratio)}."""
    import gspn.t2i as t2i

    unet = build_unet(config, device, dtype)
    twin = shared_copy(unet)  # GSPN-2 goes here: one UNet is converted once; every other weight is shared
    t2i.convert(unet, variant="gspn1", chunk=PUBLISHED_CHUNK, dtype=dtype)
    t2i.convert(twin, variant="gspn2", chunk=PUBLISHED_CHUNK, dtype=dtype)
    variants = {"original attn1 (SDPA)": (None, unet, t2i.detach),
                f"GSPN-1, chunk {PUBLISHED_CHUNK}": ("gspn1", unet, t2i.attach),
                f"GSPN-2, chunk {PUBLISHED_CHUNK}": ("gspn2", twin, t2i.attach)}
    original = next(iter(variants))
    rows, ratios = [], {}
    for latent in latents:
        c = census(config, latent)
        flops = {name: c.total if v is None else c.gspn_flops(v) for name, (v, _, _) in variants.items()}
        estimate = {name: pace.seconds((model, name), flops[name]) for name in variants}
        run = {name: variants[name] for name in variants if estimate[name] <= max_seconds}
        inputs = unet_inputs(unet, latent)

        def forward(net, switch):
            switch(net)
            with torch.no_grad():
                net(**inputs)

        seconds, memory = timed({name: (lambda net=net, switch=switch: forward(net, switch))
                                 for name, (_, net, switch) in run.items()}, repeats, budget_s, device)
        for name, (variant, _, _) in variants.items():
            row = {"latent (px)": f"{latent} ({8 * latent})", "attn1": name, "TFLOP": _tflop(flops[name])}
            if name not in run:
                rows.append({**row, "forward s": f"{SKIPPED} (est. {estimate[name]:.0f} s)",
                             **dict.fromkeys(("peak MB", "time ratio", "FLOP ratio", "time / FLOP ratio"), "")})
                continue
            pace.record((model, name), flops[name], seconds[name])
            flop_ratio = c.total / flops[name]
            time_ratio = seconds[original] / seconds[name] if original in seconds else None
            if variant is not None and time_ratio:
                ratios[latent, variant] = (time_ratio, flop_ratio)
            rows.append({**row, "forward s": f"{seconds[name]:.2f}", "peak MB": _mb(memory[name]),
                         "time ratio": _ratio(seconds.get(original), seconds[name]), "FLOP ratio": f"{flop_ratio:.2f}x",
                         "time / FLOP ratio": f"{time_ratio / flop_ratio:.2f}" if time_ratio else "-"})
        print(f"{model} UNet at latent {latent} done", flush=True)
    print_table(rows, f"Whole-UNet forward: {model} config, random weights, batch 1, 77 text tokens; GSPN-1 by "
                      "gspn.t2i.convert / detach / attach, GSPN-2 on a copy sharing every weight; variants "
                      "interleaved (median times)", markdown=True)
    return ratios


# --- targets, protocol, main ------------------------------------------------------------------------

def target_table(layers: dict, unet: dict) -> None:
    """The issue's targets from the results of tables 1 and 3: met, not met, or not measured."""
    model, channels, side, wanted = LAYER_TARGET
    times = layers.get((model, channels, side), {})
    attention = next((m.forward for name, m in times.items() if name.startswith("attn1")), None)
    gspn2 = {name: m.forward for name, m in times.items() if name.startswith(NAMES["gspn2"]) and attention}
    rows = []
    for name in gspn2 or [NAMES["gspn2"]]:
        speedup = attention / gspn2[name] if name in gspn2 else None
        rows.append(_target(f"{name} forward >= {wanted:.0f}x attn1 (SDPA), {model} C={channels} at {side}^2 tokens",
                            speedup and f"{speedup:.1f}x", speedup is not None and speedup >= wanted))
    latent, gap = UNET_TARGET
    for variant in VARIANTS:
        time_ratio, flop_ratio = unet.get((latent, variant), (None, None))
        off = time_ratio / flop_ratio - 1 if time_ratio else None
        rows.append(_target(f"SD-1.5 forward at {8 * latent} px, {NAMES[variant]}: time ratio within {100 * gap:.0f}% "
                            "of the FLOP ratio", off is not None and f"{time_ratio:.2f}x vs {flop_ratio:.2f}x "
                            f"({100 * off:+.0f}%)", off is not None and abs(off) <= gap))
    print_table(rows, "Targets", markdown=True)


def _target(target: str, measured: str | None, met: bool) -> dict:
    if not measured:
        return {"target": target, "measured": "not measured", "met": "-"}
    return {"target": target, "measured": measured, "met": "yes" if met else "no"}


def protocol(device: torch.device, dtype: torch.dtype, args) -> None:
    import diffusers

    from gspn.ops.backends import resolve

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        memory = "torch.cuda.max_memory_allocated over the memory allocated before the call"
    else:
        name = f"CPU: {_cpu_model()}, {os.cpu_count()} cores"
        memory = "peak resident set (VmHWM) over the resident set before the call (common.peak_memory)"
    memory += ", measured on each call's warm-up run"
    gspn_backend = resolve("", device).__name__.rpartition(".")[2]
    lines = [("device", name), ("dtype", str(dtype).removeprefix("torch.")), ("threads", torch.get_num_threads()),
             ("attention backend", attention_backend(device, dtype)),
             ("GSPN backend", f"gspn.ops backend {gspn_backend!r} (the fused mixer op)"),
             ("repeats", f"layers {args.repeats}, UNet {args.unet_repeats} (median; after one warm-up run; "
                         f"repeats stop past --budget {args.budget} s)"),
             ("skip", f"calls estimated over --max-seconds {args.max_seconds}"), ("memory", memory),
             ("weights", "random; batch 1"),
             ("versions", f"torch {torch.__version__}, diffusers {diffusers.__version__}")]
    print("text2image benchmark: attn1 (SDPA) vs GSPN, protocol\n")
    print_table([{"setting": k, "value": v} for k, v in lines], markdown=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _ints(text: str | None, default) -> tuple[int, ...]:
    return default if text is None else tuple(int(s) for s in text.split(",") if s)


def _mb(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _tflop(flops: int) -> str:
    tflop = flops / 1e12
    return f"{tflop:,.0f}" if tflop >= 100 else f"{tflop:.3g}"


def _ratio(reference: float | None, seconds: float) -> str:
    return "-" if reference is None else f"{reference / seconds:.2f}x"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--tables", default="layers,flops,unet", help="which tables, comma-separated")
    parser.add_argument("--latents", help=f"table 1 latent sides, default {','.join(map(str, LATENTS))}")
    parser.add_argument("--chunks", help="GSPN chunks of table 1, default none,4 ('none' = global scans; --quick: 4)")
    parser.add_argument("--pixels", help=f"table 2 image sides, default {','.join(map(str, PIXELS))}")
    parser.add_argument("--unet-latents", help=f"table 3 latent sides, default {','.join(map(str, UNET_LATENTS))}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per layer call")
    parser.add_argument("--unet-repeats", type=int, default=3, help="timed runs per UNet forward")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per call beyond which repeats stop")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="skip a call whose estimated time (a "
                        "layer's forward + backward, a UNet's forward) is over this")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: layers at latent 16 (chunk 4 only), FLOPs at 512 px, a tiny UNet's forward, "
                             "one repeat")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.quick:
        args.repeats = args.unet_repeats = 1
    tables = set(args.tables.split(","))
    chunks = [None if c == "none" else int(c) for c in (args.chunks or ("4" if args.quick else "none,4")).split(",")]

    protocol(device, dtype, args)
    gc.collect()
    gc.freeze()  # the imports' objects stay out of the garbage collection that starts every memory measurement
    try:
        run_tables(args, tables, chunks, device, dtype)
    finally:
        gc.unfreeze()


def run_tables(args, tables: set[str], chunks: list, device: torch.device, dtype: torch.dtype) -> None:
    pace = Pace(device, dtype)
    layers, unet = {}, {}
    if "layers" in tables:
        layers = layer_tables(_ints(args.latents, QUICK_LATENTS if args.quick else LATENTS), chunks, args.repeats,
                              args.budget, args.max_seconds, device, dtype, pace)
    if "flops" in tables:
        flop_table(_ints(args.pixels, QUICK_PIXELS if args.quick else PIXELS))
    if "unet" in tables:
        if args.quick:
            from gspn.t2i.tiny import tiny_unet
            config, model = tiny_unet().config, "tiny SD"
        else:
            config, model = SD15, "SD-1.5"
        unet = unet_table(config, model, _ints(args.unet_latents, QUICK_UNET_LATENTS if args.quick else UNET_LATENTS),
                          args.unet_repeats, args.budget, args.max_seconds, device, dtype, pace)
    if tables & {"layers", "unet"}:
        target_table(layers, unet)


if __name__ == "__main__":
    main()
