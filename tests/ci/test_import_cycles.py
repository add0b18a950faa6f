"""No import cycle anywhere in edge_fer/: the modules form layers (errors and options at the
bottom, the assembly above the stages, the API and the command line on top). Every import is
counted, those inside functions and `if TYPE_CHECKING:` blocks too: an import moved into a
function or kept for a type does not remove a cycle between two layers, it hides it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "edge_fer"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for a in node.names:
                # `from edge_fer.detector import weights` imports the submodule.
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    # A package's own submodules are its parts, not its dependencies.
    return {m for m in found if m in modules and m != name
            and not (path.name == "__init__.py" and m.startswith(name + "."))}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_edge_fer():
    graph = _graph()
    assert "edge_fer.assemble" in graph and graph["edge_fer.api"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_finder_sees_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_runtime_never_names_the_api_from_below():
    graph = _graph()
    above = {"edge_fer.api", "edge_fer.cli", "edge_fer", "edge_fer.__main__"}
    users = sorted(m for m, deps in graph.items() if "edge_fer.api" in deps and m not in above)
    assert not users, f"modules below the API import it: {users}"


@pytest.mark.parametrize("module", ["edge_fer.api", "edge_fer.assemble", "edge_fer.options",
                                    "edge_fer.analyzer", "edge_fer.network", "edge_fer.config",
                                    "edge_fer.cli"])
def test_each_new_layer_imports_first(module):
    # In a fresh interpreter, so that no earlier import hides a cycle.
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
