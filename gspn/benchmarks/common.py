"""What every benchmark shares: the timer (`median_seconds`), the table printer (`print_table`) and the
peak-memory reader (`peak_memory`)."""

import ctypes
import gc
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch


def _seconds(fn: Callable[[], object], cuda: bool) -> float:
    """Seconds of one fn(); on CUDA timed with events between two synchronisations."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
                   budget_s: float = math.inf, device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds of each fn over `repeats` runs, the fns taking turns so that a busy machine slows
    them alike (the ratios hold where the absolute times do not).

    Each fn first runs `warmup` times untimed for the median; the last warm-up run sizes the repeats: a fn
    stops once its warm-up time times the runs so far would pass `budget_s` (it always runs at least once).
    On CUDA (`device`) every run is timed with events.
    """
    cuda = torch.device(device).type == "cuda"
    times: dict[str, list[float]] = defaultdict(list)
    first = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            first[name] = _seconds(fn, cuda)
    for rep in range(repeats):
        for name, fn in fns.items():
            if rep > 0 and first[name] * (rep + 1) > budget_s:
                continue
            times[name].append(_seconds(fn, cuda))
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(rows: list[dict], title: str | None = None, markdown: bool = False) -> None:
    """Print rows (dicts with the same keys, the header) as a table, every column as wide as its widest cell.

    Plain: cells right-aligned, two spaces apart. Markdown: a pipe table with cells left-aligned.
    A title is printed above the table, after a blank line.
    """
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    if title:
        print(f"\n{title}")
    if markdown:
        print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
        print("| " + " | ".join("-" * widths[c] for c in columns) + " |")
        for r in rows:
            print("| " + " | ".join(str(r[c]).ljust(widths[c]) for c in columns) + " |")
    else:
        print("  ".join(c.rjust(widths[c]) for c in columns))
        for r in rows:
            print("  ".join(str(r[c]).rjust(widths[c]) for c in columns))


def _status(key: str) -> int:
    """A field of /proc/self/status in bytes (0 where it is missing)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    """Hand the heap's free memory back to the system (glibc), so that the next peak shows in the RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn: Callable[[], object]) -> tuple[int, int] | None:
    """(resident bytes before fn(), peak resident bytes while it ran), None where Linux has no VmHWM reset.

    The process' peak resident set (VmHWM) is reset through /proc/self/clear_refs after a garbage
    collection and a heap trim (malloc_trim), so the peak is fn()'s, whatever ran before it.
    """
    gc.collect()
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status("VmRSS")
    fn()
    return before, max(_status("VmHWM"), before)
