"""A bandwidth model of the CUDA kernels' launch plans on an H100 (a model, not a measurement).

The plans are the kernels' real ones (gspn.ops.launch_plan, the runtime planner that mirrors the C++
planner); this module only models their speed, for `python -m gspn.benchmarks.propagate --plan` and
docs/cuda.md. `model` estimates what share of copy bandwidth a launch reaches, from:

- occupancy: resident blocks per SM, limited by threads, shared memory, registers (the counts ptxas
  reports for sm_90, REGISTERS below) or the block count itself;
- Little's law: an SM draws at most `bytes in flight` / LATENCY, and the chip at most
  COPY_BANDWIDTH. Ring plans keep a whole tile's copies in flight per resident block (forward lam,
  x, a, b, c: (2 kt + 3) planes of the tile; backward dh, h, a, b, c of the next tile and lam, x of
  this one: (4 kt + 3) planes; split mode SPLIT_STAGES such tiles); plans without a ring keep
  threads x loads in flight per thread (register staging) x bytes per load;
- the scan itself (compute): per step, in block mode one barrier and each thread's cross positions
  x channels of dependent shared-memory arithmetic, in warp mode one chain of two shuffles and one
  dependent multiply-add, or the SM's issue rate where many scanning warps share it; per tile three
  barriers and each thread's share of the conversions, outputs and weight gradients (CYCLES_*
  below). Split mode (one scanning warp, helper warps for the tile work): per tile the longer of the
  scanning warp's pairs of lines (the chain of one exchange between lanes per pair, or its
  instructions, which the warp issues alone on its scheduler) and the helpers' work on the
  neighbouring tiles, plus one barrier; the first tile's conversion and the last tile's drain on top
  (split_cycles). A ring overlaps the loads with
  all of it (time = max(memory, compute)); without a ring they overlap only when two blocks share an
  SM. Each wave of blocks also waits one LATENCY for its
  first tile with nothing to overlap. Not charged: launch overhead, DRAM read/write turnaround,
  tail effects of the last wave, weights re-read by each channel tile, the workspace traffic.

`bound` is the least time any kernel could take on the same model: one LATENCY before the first
bytes arrive, then the copy floor (all the bytes at COPY_BANDWIDTH) or L of the cheapest possible
scan steps (`cheapest_step_cycles`), whichever is longer. Where its share of copy bandwidth is below
a target, no kernel reaches that target on this model.

Every constant is an assumption stated here; no GPU measurement exists yet.
"""

import dataclasses

import torch

from gspn.ops import launch_plan
from gspn.ops.launch_plan import SPLIT_PITCH, SPLIT_STAGES, Plan, element_size, make_plan


@dataclasses.dataclass(frozen=True)
class ModelDevice(launch_plan.Device):
    """The planner's device limits and what the model adds: occupancy limits, bandwidth, latency, clock."""
    shared_per_sm: int
    threads_per_sm: int
    blocks_per_sm: int
    registers_per_sm: int
    copy_bandwidth: float  # bytes/s a large device-to-device copy reaches (read + write)
    latency: float  # seconds from issuing a DRAM load to its data
    clock: float  # Hz


H100 = ModelDevice(**dataclasses.asdict(launch_plan.H100), shared_per_sm=233472, threads_per_sm=2048,
                   blocks_per_sm=32, registers_per_sm=65536, copy_bandwidth=3.0e12, latency=600e-9, clock=1.755e9)
SHARED_RESERVED = 1024  # bytes the runtime reserves per block

# Register staging of plans without a ring: values (floats; doubles count twice) each thread loads
# before it waits (kForwardStage, kBackwardStage, kBackwardStageDouble of csrc/cuda/launch_config.cuh).
FORWARD_STAGE, BACKWARD_STAGE, BACKWARD_STAGE_DOUBLE = 2, 2, 2

# Registers per thread from `nvcc -arch=sm_90 -O3 -Xptxas -v` (backward, acc bytes; the most over the input
# types); the forward is bounded to 64 (two blocks of 512 threads per SM; float64: 128), the backward to 128.
REGISTERS = {(False, 4): 63, (False, 8): 80, (True, 4): 128, (True, 8): 126}
REGISTERS_SPLIT = {False: 62, True: 94}  # split-mode kernels (sm_90, the most over the input types)


def loads_in_flight(plan: Plan) -> int:
    """Without a ring: loads one thread has in flight in the tile loads (x and lam, or dh and h)."""
    values = FORWARD_STAGE if not plan.backward else BACKWARD_STAGE_DOUBLE if plan.acc == 8 else BACKWARD_STAGE
    stage = max(1, values // (2 * plan.acc // 4))
    per_thread = -(-plan.tile * plan.N // plan.threads)
    return 2 * min(stage, per_thread)


def bytes_in_flight(plan: Plan, element: int) -> int:
    """Bytes one block has in flight while it scans: a ring's copies of a whole tile, else register staging."""
    if plan.ring:
        planes = 4 * plan.kt + 3 if plan.backward else 2 * plan.kt + 3
        ahead = SPLIT_STAGES[plan.backward] if plan.split else 1  # split mode: copies run several tiles ahead
        return ahead * planes * plan.tile * plan.N * element
    return plan.threads * loads_in_flight(plan) * element


CYCLES_BARRIER = 40  # one __syncthreads of a block of up to 512 threads
CYCLES_PER_ELEMENT = 8  # block mode: one position x channel of a step (shared loads, two multiply-adds)
CYCLES_FMA = 4  # latency of a float32 multiply-add whose input is the previous one's result
CYCLES_SHUFFLE = 28  # a lane's value reaching its neighbour lane (the two shuffles of a step, issued together)
# Warp mode: the shuffles, then the one multiply-add that adds the neighbour's term (the lane's own
# terms are summed while the shuffles fly).
CYCLES_WARP_STEP = CYCLES_SHUFFLE + CYCLES_FMA
INSTRUCTIONS_WARP_STEP = 24  # warp mode: instructions of one step of one warp (two positions a lane)
# Split mode: the scanning warp computes two lines per exchange between lanes (four positions a lane
# and one halo position each side on the first line, see first_line in the kernels). Chain of a pair:
# the shuffles, the multiply-add that takes the neighbour's value into the halo position, the one
# that takes the halo into the second line. Instructions of a pair, from the sm_90 SASS of the
# unrolled whole-tile loops (8 pairs: 411 instructions forward, 423 backward): 30 multiply-adds, about
# 16 shared loads (8 of them 16-byte), 4 shuffles, 2 16-byte stores. A line alone (the odd last line
# of a tile): 18 multiply-adds, 12 loads, 4 shuffles, 1 store, and in the backward the 9 loads of the
# next line's weights.
CYCLES_SPLIT_PAIR = CYCLES_SHUFFLE + 2 * CYCLES_FMA
INSTRUCTIONS_SPLIT_PAIR = 53
INSTRUCTIONS_SPLIT_LINE = 44
ISSUE_PER_CYCLE = 4  # warp instructions an SM issues per cycle (four schedulers)
CYCLES_PER_TILE_ELEMENT = 4  # per thread: one element of a tile converted, written or reduced


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
        "registers": device.registers_per_sm // (plan.threads * (REGISTERS_SPLIT[plan.backward] if plan.split
                                                                 else REGISTERS[plan.backward, plan.acc])),
        "blocks/SM": device.blocks_per_sm,
    }
    limiter = min(limits, key=limits.get)
    return limits[limiter], limiter


def model(shape, groups, dtype: torch.dtype, backward: bool, device=H100, direction="lr") -> dict:
    """The plan and its modelled share of copy bandwidth for one launch (a model, not a measurement)."""
    B, C, H, W = shape
    element = element_size(dtype)
    acc = 8 if dtype == torch.float64 else 4
    plan = make_plan(B, C, groups, H, W, direction, None, acc, backward, device, element)
    if plan is None:
        return {"plan": None}
    occupancy, limiter = blocks_per_sm(plan, device)
    resident = min(occupancy, -(-plan.blocks // device.sms))  # on the busiest SM
    active_sms = min(device.sms, plan.blocks)
    if resident < occupancy:
        limiter = "block count"
    in_flight = resident * bytes_in_flight(plan, element)
    drawn = min(device.copy_bandwidth, active_sms * in_flight / device.latency)
    total = minimal_bytes(B, C, groups, H, W, element, backward)
    t_memory = total / drawn
    waves = -(-plan.blocks // (device.sms * occupancy))
    if plan.split:
        t_scan = waves * split_cycles(plan) / device.clock
    elif plan.warp:
        warps = resident * plan.kt  # the warps that scan
        step = max(CYCLES_WARP_STEP, warps * INSTRUCTIONS_WARP_STEP / ISSUE_PER_CYCLE)
    else:
        step = CYCLES_BARRIER + -(-plan.N // plan.threads_x) * -(-plan.kt // plan.threads_y) * CYCLES_PER_ELEMENT
    if not plan.split:
        tile_ops = 7 * plan.kt + 6 if backward else 2 * plan.kt + 3  # per tile element: conversions, outputs, sums
        per_tile = 3 * CYCLES_BARRIER + -(-plan.tile * plan.N * tile_ops // plan.threads) * CYCLES_PER_TILE_ELEMENT
        t_scan = waves * (plan.L * step + -(-plan.L // plan.tile) * per_tile) / device.clock
    hides = plan.ring or resident >= 2
    t = max(t_memory, t_scan) if hides else t_memory + t_scan
    t += waves * device.latency  # the first tile of each wave waits for its loads with nothing to overlap
    floor = total / device.copy_bandwidth
    return {"plan": plan, "blocks/SM": occupancy, "limiter": limiter, "bytes": total,
            "in flight/SM": in_flight, "time": t, "floor": floor, "share": floor / t}


def split_cycles(plan: Plan) -> int:
    """Split mode: cycles of one block. Warp 0 scans tile p while the helper warps convert tile p + 1
    (forward: lam * x and the three weights; backward: dh, h and the three weights; zeros around the
    cross axis) and drain tile p - 1 (forward: h; backward: dx, dlam and the three weight-gradient
    sums); then one barrier. The first tile's conversion and the last tile's drain have nothing to
    overlap. Warp 0 computes two lines per exchange between lanes: a pair takes the longer of its
    chain and its instructions (one a cycle: warp 0 has its scheduler to itself, the other warps on
    it stay idle); an odd last line, those of a warp-mode step and of a line alone."""
    others = plan.threads // 32 - 1
    helpers = 32 * (others - others // ISSUE_PER_CYCLE)  # every fourth warp, on warp 0's scheduler, is idle
    steps = [min(plan.tile, plan.L - t0) for t0 in range(0, plan.L, plan.tile)]
    converted, drained = (5, 8) if plan.backward else (4, 1)  # per tile element

    def convert_ops(n):
        return n * plan.N * converted + n * (SPLIT_PITCH - plan.N) * 4

    def drain_ops(n):
        return n * plan.N * drained

    def helper_cycles(ops):
        return -(-ops // helpers) * CYCLES_PER_TILE_ELEMENT

    def scan_cycles(n):
        return (n // 2 * max(CYCLES_SPLIT_PAIR, INSTRUCTIONS_SPLIT_PAIR)
                + n % 2 * max(CYCLES_WARP_STEP, INSTRUCTIONS_SPLIT_LINE))

    order = steps[::-1] if plan.backward else steps  # the backward scans the last tile first
    cycles = helper_cycles(convert_ops(order[0])) + CYCLES_BARRIER
    for p, n in enumerate(order):
        ops = (convert_ops(order[p + 1]) if p + 1 < len(order) else 0) + (drain_ops(order[p - 1]) if p else 0)
        cycles += max(scan_cycles(n), helper_cycles(ops)) + CYCLES_BARRIER
    return cycles + helper_cycles(drain_ops(order[-1])) + CYCLES_BARRIER


def cheapest_step_cycles(N: int) -> float:
    """Cycles per step that no step-by-step scan of a line of N positions can beat on this model.

    A new value is x + a * left + b * self + c * right of the previous line: a multiply-add takes one
    product, so the last one waits for a value that the one before it produced, and every step costs
    at least 2 CYCLES_FMA of dependent latency. Lanes that split a line exchange edge values: one
    exchange every T steps (halos of T positions, recomputed) costs CYCLES_SHUFFLE then at least one
    multiply-add, and each lane issues 3 multiply-adds per position it computes, at least T positions
    a step on average over the T steps. One lane owning the line exchanges nothing but issues 3 N.
    """
    if N == 1:
        return CYCLES_FMA  # no neighbours: x + b * self
    options = [max(2 * CYCLES_FMA, 3 * N)]
    for T in range(1, N):
        chain = (CYCLES_SHUFFLE + CYCLES_FMA + (T - 1) * 2 * CYCLES_FMA) / T
        options.append(max(chain, 3 * T))
    return min(options)


def bound(shape, groups, dtype: torch.dtype, backward: bool, device=H100, direction="lr") -> dict:
    """The shortest time any kernel could take on this model (a model, not a measurement): one DRAM
    latency before the first bytes arrive, then the copy floor (all the bytes at copy bandwidth) or L
    of the cheapest steps, whichever is longer; and the share of copy bandwidth that implies. Nothing
    else is charged (no tile work, no barriers, no occupancy limit), so no plan's modelled time is
    below it."""
    B, C, H, W = shape
    L, N = (W, H) if direction in ("lr", "rl") else (H, W)
    floor = minimal_bytes(B, C, groups, H, W, element_size(dtype), backward) / device.copy_bandwidth
    chain = L * cheapest_step_cycles(N) / device.clock
    time = device.latency + max(floor, chain)
    return {"time": time, "floor": floor, "chain": chain, "share": floor / time}


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
                    steps = ("split" if p.split else "warp" if p.warp else "block") + ("+ring" if p.ring else "")
                    least = bound(shape, groups, dtype, backward, device)
                    rows.append({**row, "blocks": p.blocks, "threads": p.threads, "smem KB": f"{p.smem / 1024:.1f}",
                                 "ch x steps": f"{p.kt}x{p.tile}", "mode": steps, "blocks/SM": m["blocks/SM"],
                                 "limited by": m["limiter"], "MB min": f"{m['bytes'] / 1e6:.1f}",
                                 "KB in flight/SM": f"{m['in flight/SM'] / 1024:.1f}",
                                 "floor us": f"{m['floor'] * 1e6:.2f}", "model us": f"{m['time'] * 1e6:.2f}",
                                 "model %copy": f"{100 * m['share']:.0f}", "bound us": f"{least['time'] * 1e6:.2f}",
                                 "bound %copy": f"{100 * least['share']:.0f}"})
    return rows
