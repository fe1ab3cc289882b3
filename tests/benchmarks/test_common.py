"""gspn.benchmarks.common: the one timer, table printer and peak-memory reader of every benchmark."""

import subprocess
import sys

import pytest

from gspn.benchmarks.common import median_seconds, peak_memory, print_table

ROWS = [{"backend": "cpu", "fwd": "0.21", "note": None}, {"backend": "reference", "fwd": "12.40", "note": 5}]


def test_plain_table_right_aligns_two_spaces_apart(capsys):
    print_table(ROWS)
    assert capsys.readouterr().out.splitlines() == [
        "  backend    fwd  note",
        "      cpu   0.21  None",
        "reference  12.40     5",
    ]


def test_markdown_table_left_aligns_under_its_title(capsys):
    print_table(ROWS, "Title", markdown=True)
    assert capsys.readouterr().out.splitlines() == [
        "",
        "Title",
        "| backend   | fwd   | note |",
        "| --------- | ----- | ---- |",
        "| cpu       | 0.21  | None |",
        "| reference | 12.40 | 5    |",
    ]


def test_the_timer_takes_turns_warms_up_and_stops_at_the_budget():
    calls = []
    times = median_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    calls.clear()
    median_seconds({"slow": lambda: calls.append(sum(range(10**5)))}, 5, budget_s=0.0)
    assert len(calls) == 2  # the warm-up and one timed run


def test_peak_memory_sees_a_temporary_allocation():
    memory = peak_memory(lambda: b"\1" * (64 * 2**20))
    if memory is None:
        pytest.skip("no /proc/self/clear_refs here")
    before, peak = memory
    assert peak - before >= 60 * 2**20


def test_importing_the_benchmarks_needs_no_lightning():
    code = ("import sys, gspn.benchmarks, gspn.benchmarks.cuda_model, gspn.benchmarks.propagate, "
            "gspn.benchmarks.mixer, gspn.benchmarks.generation, gspn.benchmarks.segmentation, "
            "gspn.benchmarks.text2image; "
            "print([m for m in sys.modules if m.startswith(('lightning', 'gspn.tasks'))])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
