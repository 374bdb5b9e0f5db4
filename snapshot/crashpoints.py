"""Crash points for the crash tests: `SITEMAPS_KILL_AT=step` makes the process SIGKILL itself at that step.

A real kill -9 at a named step, not an exception: nothing gets a chance to clean up, as in a real crash.
"""

from __future__ import annotations

import os
import signal

_reached: dict[str, int] = {}


def checkpoint(step: str) -> None:
    """`SITEMAPS_KILL_AT=step` kills at the first time `step` is reached, `step@k` at the k-th time."""
    name, _, nth = os.environ.get("SITEMAPS_KILL_AT", "").partition("@")
    if name == step:
        _reached[step] = _reached.get(step, 0) + 1
        if _reached[step] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
