"""The CUDA kernels compile with nvcc without warnings or register spills; needs nvcc, no GPU, no CUDA torch."""

import shutil
import subprocess

import pytest

from gspn.ops.build import source_dir

NVCC = shutil.which("nvcc")
# the macros torch.utils.cpp_extension passes to nvcc: the kernels must not need implicit half conversions
TORCH_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                 "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch,flags", [("sm_90", ["-std=c++20", "-O3", *TORCH_DEFINES]), ("sm_80", ["-std=c++17"])])
def test_kernels_compile_cleanly(arch, flags, tmp_path):
    cmd = [NVCC, "-c", f"-arch={arch}", *flags, "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra",
           "-Xptxas", "-warn-spills", "-o", str(tmp_path / "kernels.o"),
           str(source_dir() / "cuda" / "propagate_kernels.cu")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr
