"""Package discovery: gspn/, plus three folders that live beside it in the repository but install
inside it: tasks/ as `gspn.tasks`, csrc/ as `gspn._csrc` and configs/ as `gspn.configs`.

(pyproject.toml's `packages.find` cannot add a package that lives outside its parent's folder.)
Folders holding only data (kernel sources, configs) are namespace packages, hence find_namespace_packages.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"gspn.tasks": "tasks", "gspn._csrc": "csrc", "gspn.configs": "configs"}


def packages_under(package: str, folder: str) -> list[str]:
    return [package] + [f"{package}.{name}" for name in find_namespace_packages(where=folder)]


setup(
    packages=find_namespace_packages(include=["gspn", "gspn.*"])
    + [name for package, folder in MAPPED.items() for name in packages_under(package, folder)],
    package_dir=MAPPED,
    package_data={"": ["*.cpp", "*.cu", "*.h", "*.cuh", "*.yaml"], "gspn": ["py.typed"]},
)
