"""Package discovery for the fixed top-level layout: hw/, sim/ and host/ are onda.hw, onda.sim
and onda.host (see [tool.setuptools.package-dir] in pyproject.toml); every folder below them
with an __init__.py is a subpackage, so new ones need no listing."""

from pathlib import Path

from setuptools import setup

ROOTS = {"hw": "onda.hw", "sim": "onda.sim", "host": "onda.host"}
packages = [
    ".".join([ROOTS[folder], *init.parent.relative_to(folder).parts]).rstrip(".")
    for folder in ROOTS
    for init in sorted(Path(folder).rglob("__init__.py"))
    if ".venv" not in init.parts
]
setup(packages=packages)
