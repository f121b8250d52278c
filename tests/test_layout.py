"""The package layout issue 14 asks for: the loops' packages export what they say, lazily, and the
source modules and the simulator do not import each other in a cycle."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import recorder

ROOT = Path(recorder.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every recorder module -> the recorder modules it imports, at the top or inside a function
    (a lazy import still makes a cycle at run time)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}".rstrip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in found if target.startswith("recorder")}
    return graph


def _reaches(graph: dict[str, set[str]], start: str, prefix: str) -> list[str] | None:
    """A chain of imports from `start` to a module under `prefix`, or None."""
    seen = {start}
    paths = [[start]]
    while paths:
        path = paths.pop()
        for target in sorted(graph.get(path[-1], ())):
            if target == prefix or target.startswith(prefix + "."):
                return [*path, target]
            if target not in seen and target in graph:
                seen.add(target)
                paths.append([*path, target])
    return None


def test_the_simulator_never_imports_the_source_modules() -> None:
    """`recorder.sources` opens `sim:` URLs (lazily); the simulator builds on `source_base`, so
    there is no cycle between them, whichever is imported first."""
    graph = _imports()
    assert _reaches(graph, "recorder.sources", "recorder.sim") is not None  # the check can see it
    for module in sorted(
        name for name in graph if name == "recorder.sim" or name.startswith("recorder.sim.")
    ):
        assert _reaches(graph, module, "recorder.sources") is None, module
    for first in ("recorder.sources", "recorder.sim.source"):
        probe = f"import {first}, recorder.sources, recorder.sim.source"
        completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr[-2000:]


@pytest.mark.parametrize("package", ["recorder.run", "recorder.backfill"])
def test_each_loop_package_exports_what_its_docstring_says_and_imports_it_lazily(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__ is not None
    exported = sorted(module.__all__)
    for name in exported:
        assert f"`{name}`" in module.__doc__, name  # the docstring names every export
        value = getattr(module, name)
        home = getattr(value, "__module__", None)
        assert home is None or home.startswith(package + "."), (name, home)
    with pytest.raises(AttributeError):
        module.nothing_by_this_name  # noqa: B018
    # Importing the package (or its light modules) loads none of its heavy ones.
    probe = (
        f"import sys, {package}\n"
        "heavy = [name for name in sys.modules if name.endswith('.loop') or name.split('.')[0] in "
        "('sqlalchemy', 'influxdb_client')]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
