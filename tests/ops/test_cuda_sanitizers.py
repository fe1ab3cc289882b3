"""The emulated CUDA kernels (see test_cuda_emulation.py) under ThreadSanitizer and AddressSanitizer.

ThreadSanitizer sees every GPU thread as a real thread and every __syncthreads as a barrier, so a
shared-memory read and write of two threads with no barrier between them is reported as a race.
AddressSanitizer guards every tensor, the workspace and the dynamic shared memory, each allocated at
exactly its size. A handful of small cases, run by one sanitized program per sanitizer.
"""

import os
import subprocess

import pytest
import torch

from tests.ops.emulation.harness import CXX, build, read_results, write_case
from tests.ops.test_cuda_emulation import NAMES, assert_all_close, make_inputs, reference

SANITIZERS = {
    "thread": (("-O1", "-fsanitize=thread"), {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}, "ThreadSanitizer"),
    "address": (("-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"),
                {"ASAN_OPTIONS": "detect_leaks=1 exitcode=66"}, "AddressSanitizer"),
}
# (B, C, G, H, W), direction, chunk, dtype, shared opt-in bytes: every direction, chunks, G in {1, middle,
# C}, several channel tiles (workspace), a cross axis of 530 (more than a block of 512 threads), a
# shared-memory fallback plan (no ring), 16-bit storage copied one element at a time (odd W) and in
# pairs (even W, block mode), warp mode (cross axes up to 64: shuffles) and block mode, a block with
# more rows of threads than channels, the split-mode backward.
CASES = [
    ((1, 4, 2, 5, 7), "lr", 3, torch.float32, 232448),
    ((1, 40, 1, 3, 6), "tb", None, torch.float64, 232448),
    ((2, 2, 2, 3, 9), "bt", 2, torch.bfloat16, 232448),
    ((1, 3, 3, 1, 2), "rl", 1, torch.float32, 232448),
    ((1, 1, 1, 530, 2), "lr", None, torch.float32, 232448),
    ((1, 6, 1, 40, 5), "rl", 2, torch.float64, 8 * 1024),
    ((1, 2, 1, 66, 4), "rl", 3, torch.bfloat16, 232448),
    ((1, 1, 1, 9, 40), "lr", None, torch.float32, 232448),  # a row of threads beyond the channel: tile work only
    # split-mode backward (one scanning warp, helper warps on the neighbouring tiles): three tiles, the
    # last one short; 16-bit elements copied one at a time, then float32 copies with a chunk
    ((1, 1, 1, 64, 33), "lr", None, torch.float16, 232448),
    ((1, 2, 1, 40, 36), "bt", 3, torch.float32, 232448),
]


def sanitizer_works(flags, tmp_path) -> str | None:
    """None if the compiler can build and run a threaded program with these flags, else why not."""
    src = tmp_path / "probe.cpp"
    src.write_text("#include <thread>\nint main() { int v = 0; std::thread t([&] { v = 1; }); t.join(); return v - 1; }\n")
    exe = tmp_path / "probe"
    result = subprocess.run([CXX, "-pthread", *flags, str(src), "-o", str(exe)], capture_output=True, text=True)
    if result.returncode != 0:
        return f"{CXX} cannot build with {' '.join(flags)}: {result.stderr.strip()[-300:]}"
    result = subprocess.run([str(exe)], capture_output=True, text=True)
    if result.returncode != 0:
        return f"a program built with {' '.join(flags)} does not run here: {result.stderr.strip()[-300:]}"
    return None


@pytest.mark.parametrize("sanitizer", list(SANITIZERS))
def test_kernels_are_clean_under_sanitizer(sanitizer, tmp_path):
    if CXX is None:
        pytest.skip("no C++ compiler (g++)")
    flags, env, name = SANITIZERS[sanitizer]
    reason = sanitizer_works(flags[1:], tmp_path)
    if reason is not None:
        pytest.skip(reason)
    program = build(tmp_path / "build", program=True, flags=flags)
    args, expected = [], []
    for k, (shape, direction, chunk, dtype, optin) in enumerate(CASES):
        tensors = make_inputs(*shape, dtype=dtype, seed=k)
        write_case(tmp_path / f"in{k}", tensors, direction, chunk, shared_optin=optin)
        args += [str(tmp_path / f"in{k}"), str(tmp_path / f"out{k}")]
        expected.append((tensors, direction, chunk))
    result = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **env})
    assert name not in result.stderr, result.stderr[-6000:]
    assert result.returncode == 0, result.stderr[-6000:]
    for k, (tensors, direction, chunk) in enumerate(expected):
        got = read_results(tmp_path / f"out{k}", tensors[0], tensors[2])
        if tensors[0].dtype in (torch.float16, torch.bfloat16):  # within the 16-bit rounding of the results
            want = reference([t.double() for t in tensors], direction, chunk)
            for n, g, w in zip(NAMES, got, want):
                torch.testing.assert_close(g.double(), w, atol=5e-2, rtol=5e-2, msg=lambda m: f"{n}: {m}")
        else:
            assert_all_close(got, reference(tensors, direction, chunk), f"case {k}", atol=1e-4, rtol=1e-4)
