"""Progress on standard error for the commands that can run long: a bar redrawn in place on a terminal,
else a plain line every few seconds (what a log collector keeps). Percent when the total is known, else a count.

`update(n)` adds n done; `to(done, total)` sets both (for callers that count themselves). Thread-safe: shards
are uploaded from several threads.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

BAR = 30  # characters of the bar
# seconds between plain lines, when standard error is not a terminal (`sitemaps --progress-interval`)
LINE_EVERY = 5.0
BAR_EVERY = 0.2  # seconds between redraws of the bar


class Progress:
    def __init__(self, label: str, total: int | None = None, every: float | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.every = every if every is not None else (BAR_EVERY if self.tty else LINE_EVERY)
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def update(self, n: int) -> None:
        with self.lock:
            self.done += n
            self._maybe_show()

    def to(self, done: int, total: int | None) -> None:
        with self.lock:
            self.done, self.total = done, total
            self._maybe_show()

    def _maybe_show(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._show(now)

    def _show(self, now: float, end: str = "") -> None:
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            share = min(1.0, self.done / self.total)
            what = f"{100 * share:5.1f}% of {self.total:,}"
            if self.tty:
                what = f"[{'#' * int(BAR * share):<{BAR}}] " + what
        else:
            what = f"{self.done:,}"
        line = f"{self.label}: {what} ({rate:,.0f}/s)"
        sys.stderr.write(("\r" + line + end) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.tty and self.done:
            self._show(time.monotonic(), "\n")
