"""Generation ids: a UTC time to the millisecond and 4 random hex digits. Each new id of a manifest sorts after
every earlier one (`new_id(after=...)`), whatever the clock does, so sorting by id is sorting by publish order."""

from __future__ import annotations

import calendar
import re
import secrets
import time

ID_RE = re.compile(r"(\d{8})-(\d{6})-(\d{3})-([0-9a-f]{4})")


def new_id(after: str | None = None, now: float | None = None) -> str:
    """A new id, later than `after` (the newest id known) without waiting, even if the clock went back: then
    it is `after` plus one millisecond, so ids stay in publish order (a clock a year ahead, then corrected, costs
    nothing). `after` that is not an id is ignored."""
    ms = int((time.time() if now is None else now) * 1000)
    if after is not None and is_id(after):
        ms = max(ms, _millis(after) + 1)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ms // 1000)) + f"-{ms % 1000:03d}"
    return f"{stamp}-{secrets.token_hex(2)}"


def newest(*ids: str | None) -> str | None:
    """The newest of these generation ids (values that are not ids, such as a router's odd label, left out)."""
    return max((i for i in ids if i is not None and is_id(i)), default=None)


def _millis(gen_id: str) -> int:
    m = ID_RE.fullmatch(gen_id)
    if not m:
        raise ValueError(f"not a generation id: {gen_id!r}")
    day, clock, ms, _ = m.groups()
    return calendar.timegm(time.strptime(day + clock, "%Y%m%d%H%M%S")) * 1000 + int(ms)


def is_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def created_at(gen_id: str) -> float:
    """The time encoded in an id (seconds since the epoch)."""
    return _millis(gen_id) / 1000
