"""The CUDA kernels compile with nvcc without warnings or register spills, and use the registers the
H100 model (gspn.benchmarks.cuda_model) assumes; needs nvcc, no GPU, no CUDA torch."""

import re
import shutil
import subprocess

import pytest

from gspn.benchmarks import cuda_model
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


def ptxas_registers(tmp_path) -> dict[str, int]:
    """Registers per thread of every kernel (mangled name) in an sm_90 build with torch's flags."""
    cmd = [NVCC, "-c", "-arch=sm_90", "-std=c++20", "-O3", *TORCH_DEFINES, "-Xptxas", "-v",
           "-o", str(tmp_path / "kernels.o"), str(source_dir() / "cuda" / "propagate_kernels.cu")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = re.findall(r"Compiling entry function '(\w+)'.*?Used (\d+) registers", result.stderr, re.S)
    return {name: int(count) for name, count in found}


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
def test_model_registers_are_the_kernels(tmp_path):
    """cuda_model's register counts (they limit blocks per SM in the model) are ptxas's, the most
    over the input types: the mangled names start with the kernel's name and end with its input type
    (f, d, 6__half, 13__nv_bfloat16)."""
    registers = ptxas_registers(tmp_path)

    def most(kernel, types):
        counts = [count for name, count in registers.items()
                  if re.search(rf"\d{kernel}I(?:{'|'.join(types)})E", name)]
        assert len(counts) == len(types), f"{kernel} over {types}: {sorted(registers)}"
        return max(counts)

    narrow = ["f", "6__half", "13__nv_bfloat16"]  # float accumulation: 4-byte acc
    assert most("forward_kernel", narrow) == cuda_model.REGISTERS[False, 4]
    assert most("forward_kernel", ["d"]) == cuda_model.REGISTERS[False, 8]
    assert most("backward_kernel", narrow) == cuda_model.REGISTERS[True, 4]
    assert most("backward_kernel", ["d"]) == cuda_model.REGISTERS[True, 8]
    assert most("forward_split_kernel", narrow) == cuda_model.REGISTERS_SPLIT[False]
    assert most("backward_split_kernel", narrow) == cuda_model.REGISTERS_SPLIT[True]
