"""Docs that run: every Python block of README.md and docs/*.md is executed (in order, one
namespace per file, in a scratch folder), and every repository path and every ``seqdistill.…`` /
``_core.…`` name the docs mention exists. A block preceded by ``<!-- not run: reason -->`` is
skipped (the reason must be given); the count of those is kept small on purpose."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*not run:(?P<reason>[^>]*)-->\s*\n)?```python\n(?P<code>.*?)```", re.S)
PATH_PREFIXES = ("python/", "rust/", "docs/", "tests/", "benches/", "scripts/", ".ci/")


def blocks(path: Path) -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(path.read_text())]


def test_few_blocks_are_skipped_and_each_says_why():
    skipped = [(p.name, r) for p in DOCS for _, r in blocks(p) if r is not None]
    assert all(r.strip() for _, r in skipped)
    assert len(skipped) <= 4, skipped


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, (code, reason) in enumerate(blocks(path)):
        if reason is not None:
            continue
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{path.name}, python block {i} failed: {type(e).__name__}: {e}") from e


def mentions(pattern: str) -> set[tuple[str, str]]:
    found = set()
    for p in DOCS:
        for m in re.finditer(r"`([^`\n]+)`", p.read_text()):
            for tok in re.findall(pattern, m[1]):
                found.add((p.name, tok))
    return found


def test_every_repository_path_in_the_docs_exists():
    missing = []
    for doc, tok in mentions(r"[\w./-]+"):
        if tok.startswith(PATH_PREFIXES) and not any(c in tok for c in "<*{"):
            if not (ROOT / tok.rstrip("/")).exists():
                missing.append((doc, tok))
    assert missing == []


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_seqdistill_name_in_the_docs_exists():
    names = {
        (d, t.rstrip(".")) for d, t in mentions(r"(?<![/\w])seqdistill(?:\.\w+)+") if not t.endswith((".py", ".pyi"))
    }
    names |= {
        (d, "seqdistill._core." + t.split(".", 1)[1]) for d, t in mentions(r"(?<![/\w])_core\.\w+") if t != "_core.pyi"
    }
    missing = sorted((d, t) for d, t in names if not resolves(t))
    assert missing == []
