"""Kernels build on first use only; a failed build warns once and the reference takes over."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from gspn.ops import build, cpu, propagate
from tests.ops.test_reference import make_inputs


def test_importing_gspn_compiles_nothing(tmp_path):
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", "import gspn, gspn.ops, gspn.nn, gspn.models"], env=env, check=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_build_warns_once_and_reports_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    (tmp_path / "broken.cpp").write_text("this is not C++;\n")
    monkeypatch.setattr(build, "source_dir", lambda: tmp_path)
    with pytest.warns(RuntimeWarning, match="building the gspn_broken_test kernels failed .* reference"):
        reason = build.load_extension("gspn_broken_test", ("broken.cpp",))
    assert reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build.load_extension("gspn_broken_test", ("broken.cpp",)) == reason


def test_unavailable_kernel_falls_back_to_reference(monkeypatch):
    monkeypatch.setattr(cpu, "unavailable_reason", lambda device: "no compiler")
    x, lam, a, b, c = (t.detach() for t in make_inputs(1, 2, 1, 3, 4))
    torch.testing.assert_close(propagate(x, lam, a, b, c), propagate(x, lam, a, b, c, backend="reference"))
    with pytest.raises(RuntimeError, match="backend 'cpu' cannot run on cpu: no compiler"):
        propagate(x, lam, a, b, c, backend="cpu")
