"""One document per URL: the rule that keeps a sitemap from listing a URL twice.

A URL belongs to the first document that claims it (in the order events are applied, or a rebuild source's
order). Another document claiming it (another key, or the same key in another section) is refused: a dead
letter naming the holder's section and key. The holder's deletion, or its move to another URL, frees the URL
for the next claim.

The `loc_owners` table maps a stable 64-bit hash of each URL to its claimant. A row is a hint, not the truth:
whoever claims a URL whose row names another document checks that document first (live, and still at that
URL); if it is not, the URL was freed and the row is taken over. So deletions and URL changes write nothing
here, and a stale row can never refuse a document. Rows commit in the same transaction as the documents.

A refused claim is not lost: it waits (`loc_waiting`), its event kept. When a batch frees a URL, its waiting
claims are applied in that batch, oldest first (the first to claim it wins, the others wait on). A newer
event of the same key replaces a waiting claim of an older version (or with no version): a stale event is
never applied over newer state. A waiting claim's dead letter stands while it waits (a newer refused claim of
its key stands for it then) and is withdrawn once the claim is applied or replaced by a newer event applied
(its event then counted stale). A rebuild empties the table.

The reads and writes of both tables are snapshot/manifest/url_claims.py's.
"""

from __future__ import annotations

from hashlib import blake2b
from struct import Struct
from typing import Any, NamedTuple

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest

INDEX_MAX = 10_000  # waiting claims a batch holds an index of (with more, it asks the database per document)


class Holder(NamedTuple):
    section: str
    key: str


_INT64 = Struct(">q").unpack


def loc_hash(loc: str, _blake2b: Any = blake2b, _unpack: Any = _INT64) -> int:
    """A stable signed 64-bit hash of a URL (the same in every process and on every run): BLAKE2b's 8-byte
    digest, read as a big-endian signed integer (the defaults bind the callables: a rebuild hashes every URL)."""
    value: int = _unpack(_blake2b(loc.encode(), digest_size=8).digest())[0]
    return value


def refusal(loc: str, holder: tuple[str, str]) -> str:
    """Why a document is refused the URL `holder` (section, key) is at."""
    return (
        f"loc {loc} is already the URL of document {holder[1]!r} of section {holder[0]!r}: a URL belongs to "
        "one document (delete that one, or change its loc, first)"
    )


def current_loc(manifest: Manifest, conn: Connection, holder: Holder) -> str | None:
    """The URL `holder` is at in the manifest (its full row, or its shard's packs); None if it is not live."""
    return manifest.reader.live_loc(conn, holder.section, holder.key)


def replaces(version: int | None, older: int | None) -> bool:
    """Whether an event of `version` replaces a waiting claim of its key at `older` (no version: arrival order)."""
    return version is None or older is None or older <= version
