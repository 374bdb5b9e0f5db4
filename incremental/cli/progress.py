"""A progress line on standard error: percent of the source when its size is known, else a count."""

from __future__ import annotations

import sys
import time
from types import TracebackType


class Progress:
    def __init__(self, label: str, total: int | None = None, every: float = 1.0) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.every = every
        self.started = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._show(now)

    def _show(self, now: float, end: str = "") -> None:
        rate = self.done / max(now - self.started, 1e-9)
        what = f"{100 * self.done / self.total:5.1f}%" if self.total else f"{self.done:,}"
        line = f"{self.label}: {what} ({rate:,.0f}/s)"
        sys.stderr.write(("\r" + line + end) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.tty and self.done:
            self._show(time.monotonic(), "\n")
