"""Building the C++/CUDA kernels on first use (ninja via torch.utils.cpp_extension), never at import.

A build that fails warns once and reports the backend unavailable, so callers fall back to the
reference. Builds are cached by torch in TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions).
"""

import functools
import importlib.resources
import os
import sys
import warnings
from pathlib import Path


def source_dir() -> Path:
    """The csrc/ folder, shipped inside the package as `gspn._csrc`."""
    return Path(str(importlib.resources.files("gspn._csrc")))


@functools.cache
def load_extension(name: str, sources: tuple[str, ...], extra_cflags: tuple[str, ...] = (),
                   extra_cuda_cflags: tuple[str, ...] = (), extra_ldflags: tuple[str, ...] = ()) -> str | None:
    """Build and load an op library; returns None on success, else the reason it failed."""
    from torch.utils import cpp_extension  # imported lazily: it is slow and only needed here

    paths = [str(source_dir() / s) for s in sources]
    if not is_built(name):
        sys.stderr.write(f"gspn: building the {name} kernels with ninja (about a minute, once; cached in "
                         f"TORCH_EXTENSIONS_DIR)\n")
    try:
        cpp_extension.load(name=name, sources=paths, extra_cflags=list(extra_cflags),
                           extra_cuda_cflags=list(extra_cuda_cflags), extra_ldflags=list(extra_ldflags),
                           is_python_module=False, verbose=os.environ.get("GSPN_VERBOSE_BUILD") == "1")
    except Exception as err:  # a compiler, ninja or header problem: fall back, do not crash
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
        warnings.warn(f"gspn: building the {name} kernels failed ({reason}); using the pure-PyTorch "
                      "reference instead. Set GSPN_VERBOSE_BUILD=1 to see the compiler output.",
                      RuntimeWarning, stacklevel=2)
        return reason
    return None


def is_built(name: str) -> bool:
    """Whether torch's extension cache already holds a build of `name` (then loading takes a moment)."""
    from torch.utils import cpp_extension

    build_directory = getattr(cpp_extension, "_get_build_directory", None)  # private; absent: say it anyway
    if build_directory is None:
        return False
    return any(Path(build_directory(name, verbose=False)).glob(f"{name}*.so"))
