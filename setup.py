"""Package discovery: everything under gspn/ and tasks/, plus csrc/ shipped as `gspn._csrc`.

(pyproject.toml's `packages.find` cannot add a package that lives outside its parent's folder.)
Folders holding only data (kernel sources, configs) are namespace packages, hence find_namespace_packages.
"""

from setuptools import find_namespace_packages, setup

KERNELS = ["gspn._csrc"] + [f"gspn._csrc.{name}" for name in find_namespace_packages(where="csrc")]

setup(
    packages=find_namespace_packages(include=["gspn", "gspn.*", "tasks", "tasks.*"]) + KERNELS,
    package_dir={"gspn._csrc": "csrc"},
    package_data={"": ["*.cpp", "*.cu", "*.h", "*.cuh", "*.yaml"]},
)
