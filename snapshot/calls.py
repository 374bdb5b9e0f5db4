"""Outcomes of calls to outside services (S3, the Kubernetes API, IndexNow), tallied in this process.

The service shows them on /metrics as `sitemaps_calls_total{service, outcome}`; the code making the calls
only counts. Outcomes: `ok`; `retried` (failed, tried again); `failed` (given up on, or refused for good).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Literal

Service = Literal["s3", "kubernetes", "indexnow"]
Outcome = Literal["ok", "retried", "failed"]
SERVICES: tuple[Service, ...] = ("s3", "kubernetes", "indexnow")
OUTCOMES: tuple[Outcome, ...] = ("ok", "retried", "failed")

_lock = threading.Lock()
_tally: Counter[tuple[str, str]] = Counter()


def record(service: Service, outcome: Outcome) -> None:
    with _lock:
        _tally[service, outcome] += 1


def tally() -> dict[tuple[str, str], int]:
    """Every (service, outcome) pair, zeros included, counted since the process started."""
    with _lock:
        return {(s, o): _tally[s, o] for s in SERVICES for o in OUTCOMES}
