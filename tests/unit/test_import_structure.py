"""The package's import graph: layers point inward, one composition root, no cycles.

Every module under api/ is imported (so a module that cannot even be imported fails
here), and its ``import`` statements, module level and inside functions alike, are read
from its source: a late import is still a dependency.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import api

API_DIR = Path(api.__file__).resolve().parent
# Entry points: the only modules that may import the composition root.
ENTRY_POINTS = {"api.cli", "api.server"}
# The only module that may reach the demo/lab/emulator package (in the commands that
# run them).
TESTBED_USERS = {"api.cli"}
# What the domain may import besides itself: the standard library only.
FRAMEWORKS_AND_ADAPTERS = ("api.adapters", "api.http", "api.worker", "api.bootstrap",
                           "api.server", "api.cli", "api.settings", "api.seed", "falcon",
                           "sqlalchemy", "celery", "kombu", "ansible", "ansible_runner",
                           "requests", "urllib3", "jinja2", "yaml", "psutil", "hypercorn",
                           "cryptography", "lambda_testbed")


def api_modules() -> dict[str, Path]:
    modules = {"api": API_DIR / "__init__.py"}
    for info in pkgutil.walk_packages([str(API_DIR)], prefix="api."):
        if ".migrations" in info.name:
            continue  # loaded by alembic from its path, not imported by us
        spec = importlib.util.find_spec(info.name)
        modules[info.name] = Path(spec.origin)
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """The absolute module names ``name``'s source imports (relative ones resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            # ``from api.x import y`` may name a module y: count it when it is one.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = api_modules()
GRAPH = {name: {dep for dep in imports_of(name, path) if dep in MODULES and dep != name}
         for name, path in MODULES.items()}
ALL_IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_the_walk_found_the_package():
    assert {"api.bootstrap", "api.cli", "api.domain.orchestration", "api.worker.runtime",
            "api.http.app"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_among_api_modules():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_domain_imports_no_adapter_or_framework():
    for name, deps in ALL_IMPORTS.items():
        if _within(name, ["api.domain"]):
            bad = sorted(d for d in deps if _within(d, FRAMEWORKS_AND_ADAPTERS))
            assert not bad, f"{name} imports {bad}"


def test_only_entry_points_import_the_composition_root():
    importers = {name for name, deps in ALL_IMPORTS.items()
                 if "api.bootstrap" in deps and name != "api.bootstrap"}
    assert importers <= ENTRY_POINTS, sorted(importers - ENTRY_POINTS)


def test_the_product_never_imports_the_testbed():
    importers = {name for name, deps in ALL_IMPORTS.items()
                 if any(_within(d, ["lambda_testbed"]) for d in deps)}
    assert importers <= TESTBED_USERS, sorted(importers - TESTBED_USERS)


def test_the_wiring_lives_in_no_module_global():
    # What the processes build (containers, runtimes, apps) is held where they run.
    for name in ("api.bootstrap", "api.server", "api.worker.celery_app", "api.http.app"):
        module = importlib.import_module(name)
        for attribute in ("CURRENT", "_runtime", "get_runtime", "get_app"):
            assert not hasattr(module, attribute), f"{name}.{attribute}"
