"""The runtime planner gspn/ops/launch_plan.py and the C++ planner of csrc/cuda/planner.cuh share their
constants (no compiler, no GPU): the constants are read from the kernel source that holds them,
csrc/cuda/launch_config.cuh. That the two planners make the same plans is checked under emulation
(test_cuda_emulation.py)."""

import inspect
import re

from gspn.ops import launch_plan
from gspn.ops.build import source_dir
from tests.ops.emulation.harness import Emulator

CONSTANT = re.compile(r"^constexpr\s+(?:int|size_t)\s+([^;]+);", re.M)
# C++ name -> the planner's name
PLANNER = {"kMaxThreads": "MAX_THREADS", "kMaxChannelTile": "MAX_CHANNEL_TILE", "kMinSpreadTile": "MIN_SPREAD_TILE",
           "kSharedBudget": "SHARED_BUDGET", "kWarpCross": "WARP_CROSS", "kWarpChannelTile": "WARP_CHANNEL_TILE",
           "kTileShare": "TILE_SHARE", "kSplitMinCross": "SPLIT_MIN_CROSS", "kSplitCross": "SPLIT_CROSS",
           "kSplitTile": "SPLIT_TILE", "kSplitLead": "SPLIT_LEAD", "kSplitPitch": "SPLIT_PITCH",
           "kSplitRows": "SPLIT_ROWS"}


def kernel_constants() -> dict[str, int]:
    """The integer constants declared at the top level of launch_config.cuh (`constexpr int|size_t
    kName = expression, ...;`), their expressions evaluated over the constants before them."""
    source = (source_dir() / "cuda" / "launch_config.cuh").read_text()
    values: dict[str, int] = {}
    for declaration in CONSTANT.findall(source):
        for part in declaration.split(","):
            name, expression = (s.strip() for s in part.split("=", 1))
            assert re.fullmatch(r"[\w\s+*/()-]+", expression), expression
            values[name] = eval(expression.replace("/", "//"), {"__builtins__": {}}, dict(values))
    return values


def test_planner_constants_are_the_kernels():
    kernels = kernel_constants()
    assert {python: getattr(launch_plan, python) for python in PLANNER.values()} == \
        {python: kernels[cpp] for cpp, python in PLANNER.items()}
    assert launch_plan.SPLIT_STAGES[False] == kernels["kSplitForwardStages"]


def test_emulated_device_is_the_planners_h100():
    """The emulation tests compare the two planners on the emulator's default device."""
    defaults = inspect.signature(Emulator.set_device).parameters
    assert defaults["shared_optin"].default == launch_plan.H100.shared_optin
    assert defaults["sm_count"].default == launch_plan.H100.sms
