"""The CUDA kernels' launch plans, and a bandwidth model of them on an H100 (a model, not a measurement).

`make_plan` mirrors the host planner of csrc/cuda/propagate_kernels.cu line for line (the emulation
tests check that both agree on many shapes), so the plans here are the kernels' real launch plans.
`model` then estimates what share of copy bandwidth a launch reaches, from:

- occupancy: resident blocks per SM, limited by threads, shared memory, registers (the counts ptxas
  reports for sm_90, REGISTERS below) or the block count itself;
- Little's law: an SM keeps `bytes in flight` = resident blocks x threads x loads in flight per
  thread x bytes per load; it draws at most that / LATENCY, and the chip at most COPY_BANDWIDTH;
- the scan itself: per step one barrier and, per thread, its cross positions x channels of
  dependent shared-memory arithmetic (CYCLES_* below); whether it overlaps the loads (the plan says).

Every constant is an assumption stated here; no GPU measurement exists yet.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Device:
    name: str
    sms: int
    shared_optin: int  # dynamic shared memory one block may opt in to (bytes)
    shared_per_sm: int
    threads_per_sm: int
    blocks_per_sm: int
    registers_per_sm: int
    copy_bandwidth: float  # bytes/s a large device-to-device copy reaches (read + write)
    latency: float  # seconds from issuing a DRAM load to its data
    clock: float  # Hz


H100 = Device("H100 SXM", sms=132, shared_optin=232448, shared_per_sm=233472, threads_per_sm=2048,
              blocks_per_sm=32, registers_per_sm=65536, copy_bandwidth=3.0e12, latency=600e-9, clock=1.755e9)
SHARED_RESERVED = 1024  # bytes the runtime reserves per block

# The planner's constants (propagate_kernels.cu).
MAX_THREADS = 512
MAX_CHANNEL_TILE = 32
MIN_SPREAD_TILE = 4
SHARED_BUDGET = 100 * 1024
# Register staging: values (floats; doubles count twice) each thread loads before it waits.
FORWARD_STAGE, BACKWARD_STAGE, BACKWARD_STAGE_DOUBLE = 16, 6, 6

# Registers per thread from `nvcc -arch=sm_90 -O3 -Xptxas -v` (acc float / double).
REGISTERS = {(False, 4): 64, (False, 8): 62, (True, 4): 64, (True, 8): 64}
OVERLAPS_SCAN = False  # loads of the next tile are issued only after the scan of this one


def loads_in_flight(plan: "Plan") -> int:
    """Loads one thread has in flight in the tile loads (x and lam, or dh and h: two arrays)."""
    values = FORWARD_STAGE if not plan.backward else BACKWARD_STAGE_DOUBLE if plan.acc == 8 else BACKWARD_STAGE
    stage = max(1, values // (2 * plan.acc // 4))
    per_thread = -(-plan.tile * plan.N // plan.threads)
    return 2 * min(stage, per_thread)
CYCLES_BARRIER, CYCLES_PER_ELEMENT = 40, 8


@dataclass
class Plan:
    blocks: int
    threads_x: int  # cross positions
    threads_y: int  # channels
    smem: int
    kt: int  # channels per block
    tile: int  # scan steps per tile
    channel_tiles: int
    L: int  # scan length
    N: int  # cross length
    acc: int  # accumulator bytes
    backward: bool

    @property
    def threads(self) -> int:
        return self.threads_x * self.threads_y


def _plane(N, tile, cross_contiguous):
    if cross_contiguous:
        return tile * N
    return N * (tile if tile % 2 else tile + 1)


def shared_elements(N, cross_contiguous, kt, tile, backward):
    plane = _plane(N, tile, cross_contiguous)
    return (2 * kt + 3) * plane + (kt + 3) * N if backward else (kt + 3) * plane + kt * N


def _plan_one(B, C, G, H, W, direction, acc, backward, device) -> Plan | None:
    L, N, cross_contiguous = (W, H, False) if direction in ("lr", "rl") else (H, W, True)
    K = C // G
    budget = min(device.shared_optin, SHARED_BUDGET)

    def fits(kt, tile, limit):
        return shared_elements(N, cross_contiguous, kt, tile, backward) * acc <= limit

    widest = min(K, MAX_CHANNEL_TILE)
    while widest > MIN_SPREAD_TILE and B * G * -(-K // widest) < 2 * device.sms:
        widest = (widest + 1) // 2
    found, kt = None, widest
    while found is None:
        steps = 32
        while steps >= 4 and found is None:
            tile = min(steps, L)
            if fits(kt, tile, budget):
                found = (kt, tile)
            steps //= 2
        if kt == 1:
            break
        kt = (kt + 1) // 2
    steps = 32
    while steps >= 1 and found is None:
        tile = min(steps, L)
        if fits(1, tile, device.shared_optin):
            found = (1, tile)
        steps //= 2
    if found is None:
        return None
    kt, tile = found
    channel_tiles = -(-K // kt)
    threads_x = min(-(-N // 32) * 32, MAX_THREADS)
    threads_y = min(kt, MAX_THREADS // threads_x)
    smem = shared_elements(N, cross_contiguous, kt, tile, backward) * acc
    return Plan(B * G * channel_tiles, threads_x, threads_y, smem, kt, tile, channel_tiles, L, N, acc, backward)


def make_plan(B, C, G, H, W, direction, chunk, acc, backward, device=H100) -> Plan | None:
    """The plan of one launch (chunk does not change it), or None where the kernels refuse the shape.
    The forward refuses what the backward could not take."""
    if min(B, C, G, H, W) <= 0 or C % G:
        return None
    if not backward and _plan_one(B, C, G, H, W, direction, acc, True, device) is None:
        return None
    return _plan_one(B, C, G, H, W, direction, acc, backward, device)


def max_cross_length(dtype: torch.dtype, device=H100) -> int:
    """The longest cross axis both the forward and the backward accept."""
    acc = 8 if dtype == torch.float64 else 4
    lo, hi = 1, 1 << 20
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ok = all(make_plan(1, 1, 1, mid, 2, "lr", None, acc, bw, device) is not None for bw in (False, True))
        lo, hi = (mid, hi) if ok else (lo, mid - 1)
    return lo


def minimal_bytes(B, C, G, H, W, element, backward):
    """Bytes that must move: forward reads x, lam, a, b, c and writes h; backward reads dh, x, lam, a,
    b, c, h and writes dx, dlam, da, db, dc."""
    planes = (7 if backward else 3) * C + (6 if backward else 3) * G
    return B * planes * H * W * element


def blocks_per_sm(plan: Plan, device=H100) -> tuple[int, str]:
    """Resident blocks per SM and what limits them."""
    limits = {
        "threads": device.threads_per_sm // plan.threads,
        "shared memory": device.shared_per_sm // (plan.smem + SHARED_RESERVED),
        "registers": device.registers_per_sm // (plan.threads * REGISTERS[plan.backward, plan.acc]),
        "blocks/SM": device.blocks_per_sm,
    }
    limiter = min(limits, key=limits.get)
    return limits[limiter], limiter


def model(shape, groups, dtype: torch.dtype, backward: bool, device=H100, direction="lr") -> dict:
    """The plan and its modelled share of copy bandwidth for one launch (a model, not a measurement)."""
    B, C, H, W = shape
    element = torch.finfo(dtype).bits // 8
    acc = 8 if dtype == torch.float64 else 4
    plan = make_plan(B, C, groups, H, W, direction, None, acc, backward, device)
    if plan is None:
        return {"plan": None}
    occupancy, limiter = blocks_per_sm(plan, device)
    resident = min(occupancy, -(-plan.blocks // device.sms))  # on the busiest SM
    active_sms = min(device.sms, plan.blocks)
    if resident < occupancy:
        limiter = "block count"
    in_flight = resident * plan.threads * loads_in_flight(plan) * element
    drawn = min(device.copy_bandwidth, active_sms * in_flight / device.latency)
    total = minimal_bytes(B, C, groups, H, W, element, backward)
    t_memory = total / drawn
    waves = -(-plan.blocks // (device.sms * occupancy))
    per_thread = -(-plan.N // plan.threads)
    t_scan = waves * plan.L * (CYCLES_BARRIER + per_thread * plan.kt * CYCLES_PER_ELEMENT) / device.clock
    hides = OVERLAPS_SCAN or resident >= 2
    t = max(t_memory, t_scan) if hides else t_memory + t_scan
    floor = total / device.copy_bandwidth
    return {"plan": plan, "blocks/SM": occupancy, "limiter": limiter, "bytes": total,
            "in flight/SM": in_flight, "time": t, "floor": floor, "share": floor / t}


TABLE_SHAPES = [(16, 8, 1024, 1024), (32, 196, 32, 32), (1, 768, 64, 64), (1, 1152, 64, 64), (1, 32, 64, 64),
                (1, 32, 128, 128), (1, 64, 256, 256), (8, 64, 256, 256), (1, 128, 512, 512), (128, 576, 56, 56)]


def table(shapes=TABLE_SHAPES, dtypes=(torch.float32, torch.bfloat16), device=H100) -> list[dict]:
    rows = []
    for shape in shapes:
        for groups, mode in ((shape[1], "per-channel"), (1, "shared")):
            for dtype in dtypes:
                for backward in (False, True):
                    m = model(shape, groups, dtype, backward, device)
                    p = m["plan"]
                    row = {"shape": "x".join(map(str, shape)), "weights": mode,
                           "dtype": str(dtype).removeprefix("torch."), "pass": "bwd" if backward else "fwd"}
                    if p is None:
                        rows.append({**row, "blocks": "refused"})
                        continue
                    rows.append({**row, "blocks": p.blocks, "threads": p.threads, "smem KB": f"{p.smem / 1024:.1f}",
                                 "ch x steps": f"{p.kt}x{p.tile}", "blocks/SM": m["blocks/SM"],
                                 "limited by": m["limiter"], "MB min": f"{m['bytes'] / 1e6:.1f}",
                                 "KB in flight/SM": f"{m['in flight/SM'] / 1024:.1f}",
                                 "model ms": f"{m['time'] * 1e3:.3f}", "floor ms": f"{m['floor'] * 1e3:.3f}",
                                 "model %copy": f"{100 * m['share']:.0f}"})
    return rows
