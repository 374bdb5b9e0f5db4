"""Generation ids: sortable by time, unique even for two publishes in the same millisecond."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime

ID_RE = re.compile(r"(\d{8})-(\d{6})-(\d{3})-([0-9a-f]{4})")


def new_id(after: str | None = None, now: float | None = None) -> str:
    """A new id, later than `after` (the newest id known) even if the clock went back."""
    t = time.time() if now is None else now
    while True:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t)) + f"-{int(t * 1000) % 1000:03d}"
        gen_id = f"{stamp}-{secrets.token_hex(2)}"
        if after is None or gen_id[:19] > after[:19]:
            return gen_id
        t += 0.001


def is_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def created_at(gen_id: str) -> float:
    """The time encoded in an id (seconds since the epoch)."""
    m = ID_RE.fullmatch(gen_id)
    if not m:
        raise ValueError(f"not a generation id: {gen_id!r}")
    day, clock, ms, _ = m.groups()
    dt = datetime.strptime(day + clock, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return dt.timestamp() + int(ms) / 1000
