"""The code base's shape: imports point one way (host -> sim -> hw) and no module imports itself back.

Read from the source (``ast``), so it holds for imports inside functions too, which Python would
only resolve when the function runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"hw": "onda.hw", "sim": "onda.sim", "host": "onda.host"}
LAYER = {"onda.hw": 0, "onda.sim": 1, "onda.host": 2}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([name, *parts])] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """The onda modules ``name`` imports (a package's import of a name resolved to its submodule
    when the name is one)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("onda.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("onda."):
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in MODULES else mod)
    return {m for m in found if m in MODULES and m != name}


def _layer(name: str) -> int:
    return LAYER[".".join(name.split(".")[:2])]


def test_imports_point_one_way():
    """hw imports neither sim nor host; sim does not import host (at any depth, lazily or not)."""
    wrong = [f"{name} imports {dep}" for name, path in sorted(MODULES.items())
             for dep in sorted(_imports(name, path, top_level_only=False)) if _layer(dep) > _layer(name)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    """No cycle among the modules' top-level imports (a package importing its own submodules to
    re-export them is not a cycle: the submodules must not import the package back)."""
    graph = {name: _imports(name, path, top_level_only=True) for name, path in MODULES.items()}
    for name in graph:  # a package's __init__ re-exporting its submodules
        graph[name] = {d for d in graph[name] if not (d.startswith(name + ".") and MODULES[name].name == "__init__.py")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", ["onda.host.quantizer", "onda.host.verify", "onda.host.cli", "onda.host.compiler"])
def test_named_packages(name):
    """The quantizer, verification, CLI and compiler are packages, not loose files."""
    assert MODULES[name].name == "__init__.py"
