"""The emulation tests catch real kernel bugs: each test seeds one bug into the kernel source text,
builds it under emulation and checks that the launch fails or the results leave the reference.

Every mutation names the exact source text it changes, and the test fails loudly when that text is
no longer in the kernel sources of csrc/cuda, exactly once (a seeded bug that silently stops applying
would prove nothing); it is replaced in whichever file holds it. The mutants and the unmutated
kernels are built once per module, in parallel, without optimisation, and each runs one small case.
"""

import concurrent.futures
import os

import pytest
import torch

from tests.ops.emulation.harness import CXX, EmulationError, Emulator, build, kernel_sources
from tests.ops.test_cuda_emulation import assert_all_close, emulated, make_inputs, reference

BLOCK_CASE = ((1, 2, 1, 70, 6), "lr", None)  # cross axis 70: block mode, a barrier per step
WARP_CASE = ((1, 2, 1, 6, 7), "lr", None)  # cross axis 6: warp mode, shuffles
CHUNK_CASE = ((1, 2, 1, 5, 9), "lr", 3)
HELPER_CASE = ((1, 1, 1, 9, 40), "lr", None)  # warp mode, one channel, a second row of threads for the tile work
# Split mode (float accumulation only): three tiles of up to 16 steps, the last one short.
SPLIT_CASE = ((1, 2, 1, 40, 36), "lr", 5, torch.float32)
SPLIT_SYNC_CASE = ((1, 1, 1, 64, 33), "lr", None, torch.float16)  # odd W: 16-bit copies land at once
TOLERANCE = {torch.float64: None, torch.float32: 1e-4, torch.float16: 1e-2}  # against the float64 reference

# name: (text in one kernel source of csrc/cuda, its replacement, case)
MUTATIONS = {
    "missing barrier after a forward scan step": (
        "        __syncthreads();\n      }\n    }\n\n    for (int k = 0; k < bp.kn; ++k) {\n      T* hk",
        "      }\n    }\n\n    for (int k = 0; k < bp.kn; ++k) {\n      T* hk",
        BLOCK_CASE),
    "a and c swapped in the forward": (
        "copy_span(stage + (2 * cfg.kt + m) * sg.plane, weights[m],",
        "copy_span(stage + (2 * cfg.kt + m) * sg.plane, weights[2 - m],",
        WARP_CASE),
    "chunk restart one step late": (
        "for (int q = phase == 0 ? 0 : chunk - phase; q <= 32; q += chunk)",
        "for (int q = phase == 0 ? 1 : chunk - phase + 1; q <= 32; q += chunk)",
        CHUNK_CASE),
    "forward shared memory one line short": (
        "(kt + 3) * plane + kt * n;",
        "(kt + 3) * plane + kt * n - n;",
        BLOCK_CASE),
    "missing wait for the asynchronous copies": (
        "      __pipeline_wait_prior(0);\n      __syncthreads();  // every thread's copies of this tile have landed\n"
        "      const Span sp(g, t0, steps, cfg.granule);",
        "      __syncthreads();\n      const Span sp(g, t0, steps, cfg.granule);",
        WARP_CASE),
    "shuffle from the wrong side in the warp-mode forward": (
        "const A left = __shfl_up_sync(kFullWarp, h1, 1);",
        "const A left = __shfl_down_sync(kFullWarp, h1, 1);",
        WARP_CASE),
    "a helper row scans in the warp-mode forward": (
        "if (k < bp.kn) {\n        A* vk = v + k * tl.plane;",
        "if (k <= bp.kn) {\n        A* vk = v + k * tl.plane;",
        HELPER_CASE),
    # The emulated shuffles themselves: every lane must take part, with the whole warp in the mask.
    "shuffle skipped by half the lanes": (
        "const A left = __shfl_up_sync(kFullWarp, h1, 1);",
        "const A left = tx < 16 ? __shfl_up_sync(kFullWarp, h1, 1) : h1;",
        WARP_CASE),
    "shuffle mask naming half the warp": (
        "const A left = __shfl_up_sync(kFullWarp, h1, 1);",
        "const A left = __shfl_up_sync(0xffffu, h1, 1);",
        WARP_CASE),
    # Split mode: one barrier per tile between the scanning warp and the helpers, each helper's own
    # waits for its copies, staging slots owned by one thread whatever the tile's length.
    "no barrier per tile in the split forward": (
        "    __syncthreads();  // forward: tile p scanned, tile p + 1 filled, tile p - 1 written out\n",
        "",
        SPLIT_CASE),
    "split forward converts before its copies land": (
        "      __pipeline_wait_prior(kSplitForwardStages - 1);  // this thread's copies of tile p + 1\n",
        "      __pipeline_wait_prior(kSplitForwardStages);\n",
        SPLIT_CASE),
    "no barrier per tile in the split backward": (
        "    __syncthreads();  // tile p scanned, tile p + 1 filled, tile p - 1 drained\n",
        "",
        SPLIT_CASE),
    "split backward converts before its copies land": (
        "      __pipeline_wait_prior(3);  // this thread's copies of the scan inputs of tile p + 1\n",
        "      __pipeline_wait_prior(4);\n",
        SPLIT_CASE),
    "split backward drains before lam and x land": (
        "      __pipeline_wait_prior(3);  // this thread's copies of lam and x of tile p - 1\n",
        "      __pipeline_wait_prior(4);\n",
        SPLIT_CASE),
    # Split mode's scan: two lines per exchange between lanes, with a halo position each side.
    "halo from the wrong neighbour in the split scan": (
        "  left += w.left[0] * l2;\n",
        "  left += w.left[0] * r2;\n",
        SPLIT_CASE),
    "second line of a pair with the wrong weights (split backward)": (
        "dn = second_line(il - kSplitPitch, load_weights(wl, -kSplitPlane), m, left, right);",
        "dn = second_line(il - kSplitPitch, load_weights(wl - kSplitPitch, -kSplitPlane), m, left, right);",
        SPLIT_CASE),
    "zeros before the cross axis never written (split mode)": (
        "return k < kSplitLead ? k : N + k;",
        "return k < kSplitLead ? N + kSplitLead : N + k;",
        SPLIT_CASE),
    "staging slots owned by the span's own split (split backward)": (
        "  per_run = sl.pitch / granule;\n",
        "  per_run = sp.granules;\n",
        SPLIT_SYNC_CASE),
}


def mutated_source(name: str) -> dict[str, str]:
    """The one kernel source file that holds the text `name` mutates, mutated: {file name: text}."""
    old, new, _ = MUTATIONS[name]
    holders = {file: text for file, text in kernel_sources().items() if old in text}
    count = sum(text.count(old) for text in holders.values())
    assert count == 1, f"the text that {name!r} mutates is not in the kernels (once): {old!r} ({count} times)"
    return {file: text.replace(old, new) for file, text in holders.items()}


UNMUTATED = None  # the key of the unmutated build among the mutants


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    """Every mutant and the unmutated kernels (key UNMUTATED), built at -O0: a library's path, or the
    build's error (reported by the test that uses it)."""
    if CXX is None:
        pytest.skip("no C++ compiler (g++) to build the emulated kernels")
    root = tmp_path_factory.mktemp("seeded_bugs")

    def one(index_name):
        index, name = index_name
        try:
            sources = None if name is UNMUTATED else mutated_source(name)
            return name, build(root / str(index), flags=("-O0",), sources=sources)
        except Exception as err:  # reported by the test of that mutation
            return name, err

    names = [UNMUTATED, *MUTATIONS]
    workers = max(1, min(len(names), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, enumerate(names)))


def built(mutants, name):
    library = mutants[name]
    if isinstance(library, Exception):
        raise library
    return library


def check(got, tensors, direction, chunk, context):
    """The comparison each seeded bug must fail: float64 at the reference's tolerances, float32 and
    float16 against the float64 reference (the unmutated kernels pass it with a tenfold margin)."""
    tolerance = TOLERANCE[tensors[0].dtype]
    if tolerance is None:
        assert_all_close(got, reference(tensors, direction, chunk), context)
    else:
        want = reference([t.double() for t in tensors], direction, chunk)
        assert_all_close([g.double() for g in got], want, context, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("case", [SPLIT_CASE, SPLIT_SYNC_CASE], ids=str)
def test_split_cases_pass_unmutated(case, mutants):
    """The split-mode seeded bugs' cases select split mode and pass `check` without a bug."""
    shape, direction, chunk, dtype = case
    emu = Emulator(built(mutants, UNMUTATED))
    assert all(emu.plan(dtype, *shape, direction, chunk, backward)["split"] for backward in (False, True))
    tensors = make_inputs(*shape, dtype=dtype)
    check(emulated(emu, tensors, direction, chunk), tensors, direction, chunk, "unmutated")


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_seeded_bug_is_caught(mutants, name):
    library = built(mutants, name)
    shape, direction, chunk, dtype = (*MUTATIONS[name][2], torch.float64)[:4]
    tensors = make_inputs(*shape, dtype=dtype)
    emu = Emulator(library)
    for _ in range(3):  # a missing barrier is a race: it shows in one of a few runs
        try:
            got = emulated(emu, tensors, direction, chunk)
        except EmulationError:
            return  # the launch failed
        try:
            check(got, tensors, direction, chunk, name)
        except AssertionError:
            return  # the results left the reference
    pytest.fail(f"seeded bug not caught: {name}")
