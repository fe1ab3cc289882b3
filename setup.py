"""Package discovery: everything under gspn/ and tasks/, plus csrc/ shipped as `gspn._csrc`.

(pyproject.toml's `packages.find` cannot add a package that lives outside its parent's folder.)
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["gspn", "gspn.*", "tasks", "tasks.*"]) + ["gspn._csrc"],
    package_dir={"gspn._csrc": "csrc"},
)
