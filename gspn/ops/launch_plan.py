"""The CUDA kernels' launch plans: a Python mirror of the host planner of csrc/cuda/planner.cuh.

`gspn.ops.cuda` calls `make_plan` on every call to decide whether the kernels take a shape (a cross
axis too long for one block's shared memory runs on the reference instead). `make_plan` mirrors the
C++ planner line for line and its constants are the C++ ones: tests/ops/test_launch_plan.py compares
the constants with the source, the emulation tests compare the plans on many shapes. The H100
performance model of these plans (used by `python -m gspn.benchmarks.propagate --plan` and
docs/cuda.md, never at run time) is gspn.benchmarks.cuda_model.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Device:
    """What the planner reads of a device (gspn.ops.cuda fills it from the real one)."""
    name: str
    sms: int
    shared_optin: int  # dynamic shared memory one block may opt in to (bytes)


H100 = Device("H100 SXM", sms=132, shared_optin=232448)

# The planner's constants (csrc/cuda/launch_config.cuh).
MAX_THREADS = 512
MAX_CHANNEL_TILE = 32
MIN_SPREAD_TILE = 1
SHARED_BUDGET = 100 * 1024
WARP_CROSS = 64  # warp mode up to this cross length
WARP_CHANNEL_TILE = MAX_THREADS // 32
TILE_SHARE = 8  # grids of at most one block per SM: rows are added until each thread has this many tile elements
# Split mode (forward_split_kernel, backward_split_kernel): one scanning warp, four positions a lane,
# helper warps for the tile work; the warps on the scanning warp's scheduler (every fourth) stay idle.
SPLIT_MIN_CROSS, SPLIT_CROSS = 33, 128  # cross axes longer than one warp's lanes, up to four positions a lane
SPLIT_TILE = 16
SPLIT_LEAD = 4  # zero positions before each working line
SPLIT_PITCH = SPLIT_LEAD + SPLIT_CROSS + 4  # floats per working line
SPLIT_ROWS = MAX_THREADS // 32
SPLIT_STAGES = {False: 3, True: 2}  # tiles of copies the helpers keep ahead: forward, backward


@dataclass
class Plan:
    blocks: int
    threads_x: int  # cross positions
    threads_y: int  # channels (all the rows a block can have when the grid has at most one block per SM)
    smem: int
    kt: int  # channels per block
    tile: int  # scan steps per tile
    channel_tiles: int
    ring: bool  # the next tile is copied asynchronously during the scan
    warp: bool  # warp mode: one warp per channel, state in registers, shuffles
    L: int  # scan length
    N: int  # cross length
    acc: int  # accumulator bytes
    backward: bool
    split: bool = False  # split mode: one scanning warp, the other warps convert and drain neighbouring tiles

    @property
    def threads(self) -> int:
        return self.threads_x * self.threads_y


def _plane(N, tile, cross_contiguous):
    if cross_contiguous:
        return tile * N
    return N * (tile if tile % 2 else tile + 1)


def _stage_plane(N, tile, cross_contiguous, granule):
    longest = N if cross_contiguous else tile
    pitch = (longest + 2 * (granule - 1)) // granule * granule
    return (tile if cross_contiguous else N) * pitch


def shared_bytes(N, cross_contiguous, kt, tile, backward, ring, acc, element):
    """Working tiles and carries (accumulator type), then a ring's staging area (input type)."""
    plane = _plane(N, tile, cross_contiguous)
    work = (2 * kt + 3) * plane + (kt + 3) * N if backward else (kt + 3) * plane + kt * N
    staged = 0
    if ring:
        staged = (4 * kt + 3 if backward else 2 * kt + 3) * _stage_plane(N, tile, cross_contiguous,
                                                                          2 if element == 2 else 1)
    return work * acc + staged * element


def split_shared_bytes(N, cross_contiguous, tile, backward, element):
    """Split mode. Backward: two slots of dh, two of d, three of h, two of the weights (float), two
    stages of dh, h, a, b, c and two of lam, x (input type). Forward: two slots of lam * x, two of h,
    two of the weights (float), SPLIT_STAGES stages of lam, x, a, b, c (input type)."""
    floats = (13 if backward else 10) * SPLIT_TILE * SPLIT_PITCH
    stages = 2 * 5 + 2 * 2 if backward else SPLIT_STAGES[False] * 5
    return floats * 4 + stages * _stage_plane(N, tile, cross_contiguous, 2 if element == 2 else 1) * element


def _plan_one(B, C, G, H, W, direction, acc, element, backward, device) -> Plan | None:
    L, N, cross_contiguous = (W, H, False) if direction in ("lr", "rl") else (H, W, True)
    K = C // G
    warp = N <= WARP_CROSS

    def fits(kt, tile, ring, limit):
        return shared_bytes(N, cross_contiguous, kt, tile, backward, ring, acc, element) <= limit

    widest = min(K, WARP_CHANNEL_TILE if warp else MAX_CHANNEL_TILE)
    while widest > MIN_SPREAD_TILE and B * G * -(-K // widest) < 2 * device.sms:
        widest = (widest + 1) // 2
    sparse = B * G * -(-K // widest) <= device.sms  # at most one block per SM: the whole opt-in
    budget = device.shared_optin if sparse else min(device.shared_optin, SHARED_BUDGET)
    if acc == 4 and sparse and widest == 1 and SPLIT_MIN_CROSS <= N <= SPLIT_CROSS:
        tile = min(SPLIT_TILE, L)
        smem = split_shared_bytes(N, cross_contiguous, tile, backward, element)
        if smem <= device.shared_optin:
            return Plan(B * G * K, 32, SPLIT_ROWS, smem, 1, tile, K, True, False, L, N, acc, backward, True)
    found, kt = None, widest
    while found is None:
        steps = 32
        while steps >= 2 and found is None:
            tile = min(steps, L)
            if fits(kt, tile, True, budget):
                found = (kt, tile, True)
            steps //= 2
        if kt == 1:
            break
        kt = (kt + 1) // 2
    for ring in (True, False):
        steps = 32
        while steps >= 1 and found is None:
            tile = min(steps, L)
            if fits(1, tile, ring, device.shared_optin):
                found = (1, tile, ring)
            steps //= 2
    if found is None:
        return None
    kt, tile, ring = found
    channel_tiles = -(-K // kt)
    blocks = B * G * channel_tiles
    threads_x = 32 if warp else min(-(-N // 32) * 32, MAX_THREADS)
    rows = WARP_CHANNEL_TILE if warp else MAX_THREADS // threads_x
    threads_y = min(kt, rows)
    if blocks <= device.sms:  # one block per SM: rows beyond the channels help with the tile work
        threads_y = max(threads_y, min(rows, -(-tile * N // (threads_x * TILE_SHARE))))
    smem = shared_bytes(N, cross_contiguous, kt, tile, backward, ring, acc, element)
    return Plan(blocks, threads_x, threads_y, smem, kt, tile, channel_tiles, ring, warp, L, N, acc,
                backward)


def make_plan(B, C, G, H, W, direction, chunk, acc, backward, device=H100, element=None) -> Plan | None:
    """The plan of one launch (chunk does not change it), or None where the kernels refuse the shape.
    The forward refuses what the backward could not take. `element`: bytes of the input type (default:
    the accumulator's, i.e. float32 or float64 inputs)."""
    if min(B, C, G, H, W) <= 0 or C % G:
        return None
    element = acc if element is None else element
    if not backward and _plan_one(B, C, G, H, W, direction, acc, element, True, device) is None:
        return None
    return _plan_one(B, C, G, H, W, direction, acc, element, backward, device)


def element_size(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def max_cross_length(dtype: torch.dtype, device=H100) -> int:
    """The longest cross axis both the forward and the backward accept."""
    acc, element = (8 if dtype == torch.float64 else 4), element_size(dtype)
    lo, hi = 1, 1 << 20
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ok = all(make_plan(1, 1, 1, mid, 2, "lr", None, acc, bw, device, element) is not None for bw in (False, True))
        lo, hi = (mid, hi) if ok else (lo, mid - 1)
    return lo
