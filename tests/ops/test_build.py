"""Kernels build on first use only; a failed build warns once and the reference takes over."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from gspn.ops import backends, build, cpu, propagate
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


def test_a_first_build_says_so_and_a_cached_one_does_not(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    (tmp_path / "tiny.cpp").write_text("int gspn_tiny() { return 1; }\n")
    monkeypatch.setattr(build, "source_dir", lambda: tmp_path)
    assert build.load_extension("gspn_tiny_test", ("tiny.cpp",)) is None
    assert "building the gspn_tiny_test kernels with ninja (about a minute, once" in capsys.readouterr().err
    build.load_extension.cache_clear()
    assert build.load_extension("gspn_tiny_test", ("tiny.cpp",)) is None
    assert "building" not in capsys.readouterr().err


def spy_backends(monkeypatch) -> list[str]:
    """Record the name of every backend whose forward or backward runs (the cpu kernel and the reference
    give the same numbers, so only this tells which one ran)."""
    ran = []
    for name, module in backends.BACKENDS.items():
        for fn in ("forward", "backward"):
            def recorded(*args, _name=name, _fn=getattr(module, fn)):
                ran.append(_name)
                return _fn(*args)
            monkeypatch.setattr(module, fn, recorded)
    return ran


def test_cpu_tensors_run_the_cpu_kernel_by_default(monkeypatch):
    ran = spy_backends(monkeypatch)
    inputs = make_inputs(1, 2, 1, 3, 4)
    propagate(*inputs).sum().backward()
    assert ran == ["cpu", "cpu"]
    ran.clear()
    propagate(*inputs, backend="reference").sum().backward()
    assert ran == ["reference", "reference"]


def test_unavailable_kernel_falls_back_to_reference(monkeypatch):
    monkeypatch.setattr(cpu, "unavailable_reason", lambda device: "no compiler")
    ran = spy_backends(monkeypatch)
    inputs = make_inputs(1, 2, 1, 3, 4)
    propagate(*inputs).sum().backward()
    assert ran == ["reference", "reference"]
    with pytest.raises(RuntimeError, match="backend 'cpu' cannot run on cpu: no compiler"):
        propagate(*inputs, backend="cpu")
    assert ran == ["reference", "reference"]


def test_environment_variable_picks_the_backend(monkeypatch):
    ran = spy_backends(monkeypatch)
    x, lam, a, b, c = (t.detach() for t in make_inputs(1, 2, 1, 3, 4))
    monkeypatch.setenv("GSPN_BACKEND", "reference")
    propagate(x, lam, a, b, c)
    monkeypatch.setenv("GSPN_BACKEND", "cpu")
    propagate(x, lam, a, b, c)
    propagate(x, lam, a, b, c, backend="reference")  # the argument wins over the variable
    assert ran == ["reference", "cpu", "reference"]
