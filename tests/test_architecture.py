"""The package's shape, checked on its source: one door to the Rust core, no import circles,
one atomic-write mechanism, the option names declared once, the stub matching the binary."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

import seqdistill
from seqdistill import core

PKG = Path(seqdistill.__file__).parent


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def imported(name: str, path: Path) -> list[tuple[str, int]]:
    """(module, line) for every import in the file, at any depth (a function-level import runs
    too), except those under ``if TYPE_CHECKING:``."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return out


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for target, _ in imported(name, path):
            if target in MODULES and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m.startswith(n + "."):  # a package importing its own submodules is not a circle
                continue
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_only_core_imports_the_extension():
    importers = sorted(
        {name for name, path in MODULES.items() for target, _ in imported(name, path) if target == "seqdistill._core"}
    )
    assert importers == ["seqdistill.core"]


def test_no_import_circle():
    assert find_cycle(edges()) is None


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_one_atomic_writer():
    """Only seqdistill/_io.py renames files into place; the one other rename sets a torn profile
    part aside (a move within the store, not a write)."""
    allowed = {("seqdistill.profiles.store", "os.replace")}
    found = []
    for name, path in MODULES.items():
        if name == "seqdistill._io":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                call = ast.unparse(node.func)
                if call in (
                    "os.replace",
                    "os.rename",
                    "shutil.move",
                    "tempfile.mkstemp",
                    "tempfile.mkdtemp",
                    "tempfile.NamedTemporaryFile",
                ):
                    found.append((name, call))
    assert sorted(set(found) - allowed) == []


def test_split_options_are_declared_once_in_rust():
    assert core.TARGETS == get_args(core.Target)
    assert core.VALID_MODES == get_args(core.Valid)
    assert core.SPLIT_KINDS == get_args(core.SplitKind)


def test_core_errors_are_the_python_hierarchy():
    from seqdistill.errors import CoreError, DataError

    with pytest.raises(CoreError, match="quantile"):
        core.global_temporal_split([0, 1], [5], quantile=1.5)
    with pytest.raises(DataError, match="training part is empty"):
        core.global_temporal_split([0, 2], [5, 5], quantile=0.5, valid="time")
    with pytest.raises(CoreError, match="target: must be one of"):
        core.global_temporal_split([0, 1], [5], target="middle")


@pytest.mark.skipif(not __import__("importlib").util.find_spec("mypy"), reason="mypy not installed")
def test_stub_matches_the_binary():
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "seqdistill._core"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
