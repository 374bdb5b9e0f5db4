"""Outcomes of calls to outside services (S3, the Kubernetes API, IndexNow), tallied in this process.

The service shows them on /metrics as `sitemaps_calls_total{service, outcome}`; the code making the calls
only counts. Outcomes: `ok`; `retried` (failed, tried again); `failed` (given up on, or refused for good).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Backoff:
    """Retries of one call to an outside service (S3, the Kubernetes API): up to `attempts` tries, sleeping about
    base * 2^n (capped) in between."""

    attempts: int = 6
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        step = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)  # jitter: parallel workers do not retry in lockstep
