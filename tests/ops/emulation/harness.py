"""Builds the CUDA kernels of csrc/cuda as host C++ over cuda_emulation.h and runs them from Python.

`build(out_dir)` reads propagate_kernels.cu with the kernel headers it includes from csrc/cuda inlined
(one translation unit, so every `__syncthreads` and shuffle keeps a source line of its own), rewrites
it (launches to `gspn_emu::launch`, `extern __shared__` to the block's dynamic shared memory),
compiles it with g++ into a shared library (or, with `program=True`, a command-line program for
sanitizer runs) and returns its path. `Emulator` loads the library with ctypes and takes CPU torch
tensors.
"""

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import torch

from gspn.ops.build import source_dir

HERE = Path(__file__).parent
CXX = os.environ.get("CXX") or shutil.which("g++")
DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
DIRECTIONS = {"lr": 0, "rl": 1, "tb": 2, "bt": 3}

KERNELS = "propagate_kernels.cu"  # the launchers; the kernels and the planner come in through its includes
LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[^\n]*$', re.M)
LAUNCH = re.compile(r"(\w+(?:<\w+>)?)\s*<<<(.*?)>>>\s*\(", re.S)
SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]+?)\s+(\w+)\[\];")


def rewrite(source: str) -> str:
    """The two CUDA-only spellings of the kernel source in host C++."""
    source, launches = LAUNCH.subn(r"::gspn_emu::launch(\1, \2)(", source)
    source = SHARED.sub(r"\1* const \2 = reinterpret_cast<\1*>(::gspn_emu::dynamic_shared());", source)
    if launches == 0:
        raise RuntimeError("no <<<...>>> launch found in the kernel source")
    return source


def kernel_sources() -> dict[str, str]:
    """The kernel source files of csrc/cuda (propagate_kernels.cu and the headers beside it), by name."""
    return {path.name: path.read_text() for path in sorted((source_dir() / "cuda").iterdir())
            if path.suffix in (".cu", ".cuh", ".h")}


def inline_includes(sources: Mapping[str, str], name: str = KERNELS) -> str:
    """`name` with every `#include "file"` replaced by that file's text from `sources`, recursively, each
    file once (the headers are `#pragma once`): one text, whose source lines are all distinct."""
    done: set[str] = set()

    def expand(current: str) -> str:
        done.add(current)

        def include(match: re.Match) -> str:
            included = match.group(1)
            if included not in sources:
                raise RuntimeError(f"{current} includes {included!r}, which is not a kernel source of csrc/cuda")
            if included in done:
                return f"// {match.group(0).strip()}: already included above"
            return expand(included)

        return LOCAL_INCLUDE.sub(include, sources[current])

    return expand(name)


def build(out_dir: Path, *, program: bool = False, flags: tuple[str, ...] = ("-O2",),
          sources: Mapping[str, str] | None = None) -> Path:
    """Compile the emulated kernels; `sources` replaces kernel source files by name (seeded-bug checks)."""
    if CXX is None:
        raise RuntimeError("no C++ compiler (g++) found")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = kernel_sources()
    unknown = set(sources or {}) - set(files)
    if unknown:
        raise ValueError(f"not kernel sources of csrc/cuda: {sorted(unknown)}")
    files.update(sources or {})
    (out_dir / "propagate_kernels_emulated.inc").write_text(rewrite(inline_includes(files)))
    target = out_dir / ("gspn_emu" if program else "libgspn_emu.so")
    cmd = [CXX, "-std=c++17", "-pthread", "-g", *flags, f"-I{HERE / 'include'}", f"-I{out_dir}",
           "-Wall", "-Wextra", "-Wno-unused-parameter", str(HERE / "harness.cpp"), "-o", str(target)]
    cmd += ["-DGSPN_EMU_MAIN"] if program else ["-shared", "-fPIC"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"emulation build failed:\n{' '.join(cmd)}\n{result.stderr[-6000:]}")
    return target


class EmulationError(RuntimeError):
    pass


def _pointer(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _shape(B, C, G, H, W):
    return (ctypes.c_int64 * 5)(B, C, G, H, W)


class Emulator:
    """The emulated kernels on CPU tensors; errors of the kernels raise EmulationError."""

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))
        self.lib.emu_error.restype = ctypes.c_char_p
        for name in ("emu_forward", "emu_backward", "emu_plan"):
            getattr(self.lib, name).restype = ctypes.c_int
        self.set_device()

    def set_device(self, shared_optin: int = 232448, sm_count: int = 132) -> None:
        """The emulated device (default: an H100); a smaller opt-in shared memory forces fallback plans."""
        self.lib.emu_set_device(ctypes.c_int(shared_optin), ctypes.c_int(sm_count))

    def _check(self, code: int) -> None:
        if code != 0:
            raise EmulationError(f"error {code}: {self.lib.emu_error().decode()}")

    @staticmethod
    def _problem(x, a, direction, chunk):
        B, C, H, W = x.shape
        return (ctypes.c_int(DTYPES[x.dtype]), _shape(B, C, a.shape[1], H, W), ctypes.c_int(DIRECTIONS[direction]),
                ctypes.c_int64(chunk or 0))

    def forward(self, x, lam, a, b, c, direction, chunk):
        tensors = [t.detach().contiguous() for t in (x, lam, a, b, c)]
        h = torch.empty_like(tensors[0])
        inputs = (ctypes.c_void_p * 5)(*(t.data_ptr() for t in tensors))
        self._check(self.lib.emu_forward(*self._problem(x, a, direction, chunk), inputs, _pointer(h)))
        return h

    def backward(self, dh, x, lam, a, b, c, h, direction, chunk):
        tensors = [t.detach().contiguous() for t in (dh, x, lam, a, b, c, h)]
        grads = [torch.empty_like(t) for t in tensors[1:6]]
        inputs = (ctypes.c_void_p * 7)(*(t.data_ptr() for t in tensors))
        outputs = (ctypes.c_void_p * 5)(*(t.data_ptr() for t in grads))
        self._check(self.lib.emu_backward(*self._problem(x, a, direction, chunk), inputs, outputs))
        return tuple(grads)

    def plan(self, dtype, B, C, G, H, W, direction, chunk, backward) -> dict | None:
        """The kernels' launch plan, or None where the planner refuses the shape."""
        out = (ctypes.c_int64 * 10)()
        code = self.lib.emu_plan(ctypes.c_int(DTYPES[dtype]), _shape(B, C, G, H, W), ctypes.c_int(DIRECTIONS[direction]),
                                 ctypes.c_int64(chunk or 0), ctypes.c_int(int(backward)), out)
        if code != 0:
            return None
        fields = ("blocks", "threads_x", "threads_y", "smem", "kt", "tile", "channel_tiles", "ring", "warp", "split")
        plan = dict(zip(fields, list(out)))
        for flag in ("ring", "warp", "split"):
            plan[flag] = bool(plan[flag])
        return plan


def write_case(path: Path, tensors, direction, chunk, shared_optin=232448, sm_count=132) -> None:
    """An input file of the command-line program: x, lam, a, b, c, dh."""
    x, a = tensors[0], tensors[2]
    B, C, H, W = x.shape
    head = torch.tensor([DTYPES[x.dtype], B, C, a.shape[1], H, W, DIRECTIONS[direction], chunk or 0, shared_optin,
                         sm_count], dtype=torch.int64)
    with open(path, "wb") as f:
        f.write(head.numpy().tobytes())
        for t in tensors:
            f.write(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def read_results(path: Path, x, a):
    """h, dx, dlam, da, db, dc from an output file of the command-line program."""
    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    out, offset = [], 0
    for like in (x, x, x, a, a, a):
        n = like.numel() * like.element_size()
        out.append(data[offset:offset + n].view(like.dtype).reshape(like.shape).clone())
        offset += n
    return out
