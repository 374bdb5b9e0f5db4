"""Documents and event files for the tests: one factory each, the variations as arguments."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

HOST = "librer.io"
TWO_SECTIONS = ("books", "authors")


def doc(
    key: int | str, version: int | None = 1, section: str | tuple[str, ...] = "books", day: int = 1, **extra: object
) -> dict[str, object]:
    """A catalog row or upsert event: `https://librer.io/<section>/<key>`, lastmod 2024-05-<day> 10:00 UTC.

    `version=None` leaves the version out (an unversioned stream); a tuple of sections spreads integer keys
    across them (key % len); `extra` adds fields or replaces any of these."""
    if isinstance(section, tuple):
        section = section[int(key) % len(section)]
    row: dict[str, object] = {
        "section": section,
        "key": str(key),
        "loc": f"https://{HOST}/{section}/{key}",
        "lastmod": f"2024-05-{day:02d}T10:00:00+00:00",
    }
    if version is not None:
        row["version"] = version
    return {**row, **extra}


def jsonl(*items: dict[str, object] | str) -> bytes:
    """Rows as JSON lines; a str item is written as it is (a malformed line)."""
    return b"".join((x.encode() if isinstance(x, str) else orjson.dumps(x)) + b"\n" for x in items)


def write_jsonl(path: Path, items: Iterable[dict[str, object] | str]) -> Path:
    path.write_bytes(jsonl(*items))
    return path
