"""Crash points for the crash tests: `SITEMAPS_KILL_AT=step` makes the process SIGKILL itself at that step.

A real kill -9 at a named step, not an exception: nothing gets a chance to clean up, as in a real crash.
"""

from __future__ import annotations

import os
import signal


def checkpoint(step: str) -> None:
    if os.environ.get("SITEMAPS_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
