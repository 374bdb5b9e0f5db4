"""What the manifest hands out: the records its operations return, each a row of one table or a tally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(slots=True)
class Counts:
    """What a command did with its input: every document or event is counted in exactly one of these."""

    applied: int = 0
    stale: int = 0  # older than what the manifest holds (or a duplicate): ignored by design
    rejected: int = 0  # invalid: recorded in the dead-letter table with the reason

    def add(self, other: Counts) -> None:
        self.applied += other.applied
        self.stale += other.stale
        self.rejected += other.rejected

    def __str__(self) -> str:
        return f"applied {self.applied}, stale {self.stale}, rejected {self.rejected}"


@dataclass(frozen=True, slots=True)
class Shard:
    section: str
    shard_no: int
    url_count: int
    byte_count: int
    revision: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One object of a generation, as written and verified."""

    name: str
    size: int
    md5: str
    url_count: int = 0
    lastmod: str | None = None
    lastmod_ts: float | None = None
    section: str | None = None
    shard_no: int | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    id: str
    state: str
    base_id: str | None
    created_at: float
    published_at: float | None
    url_count: int
    file_count: int
    rendered: int
    copied: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    created_at: float
    source: str
    reason: str
    raw: bytes


def asdict(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


class HoldRow(NamedTuple):
    """The operator's hold, as stored (snapshot/hold.py gives it its meaning)."""

    generation_id: str | None
    since: float
    by: str
    reason: str | None


class DiffRow(NamedTuple):
    """What a generation changed in one section against the generation it was published on."""

    section: str
    base_id: str | None
    added: int
    removed: int
    changed: int


class Submission(NamedTuple):
    """What one IndexNow endpoint did with one generation's URLs."""

    endpoint: str
    urls: int
    batches: int
    submitted: int
    statuses: dict[int, int]  # answer status -> how many times (0: no answer)
    gave_up: bool
    message: str
