"""Shared bench helpers: machine description, peak-memory sampling, JSON output."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        from seqdistill import core

        pages = ", huge pages" if core.huge_pages() else ", no huge pages"
    except ImportError:  # the package is not built
        pages = ""
    return f"{os.cpu_count()} cores {cpu}{mem}{pages}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples the resident set every few ms; ``peak`` is the maximum above the starting RSS."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = 0
        self.max = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.start = self.max = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max = max(self.max, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.max = max(self.max, rss_bytes())

    @property
    def peak(self) -> int:
        return self.max - self.start


def write_json(path: str | None, bench: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    """The bench's JSON (`bench`, `machine`, `rows`, then any `extra` fields such as the command)."""
    if not path:
        return
    out = {"bench": bench, "machine": machine(), "rows": rows, **extra}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, p)
