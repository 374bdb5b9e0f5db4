"""One document per URL: the rule that keeps a sitemap from listing a URL twice.

A URL belongs to the first document that claims it (in the order events are applied, or a rebuild source's
order). Another document claiming it (another key, or the same key in another section) is refused: a dead
letter naming the holder's section and key. The holder's deletion, or its move to another URL, frees the URL
for the next claim.

The `loc_owners` table maps a stable 64-bit hash of each URL to its claimant. A row is a hint, not the truth:
whoever claims a URL whose row names another document checks that document first (live, and still at that
URL); if it is not, the URL was freed and the row is taken over. So deletions and URL changes write nothing
here, and a stale row can never refuse a document. Rows commit in the same transaction as the documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b
from struct import Struct
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest, loc_owners

CHUNK = 500  # hashes per IN (...) query


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
    return (f"loc {loc} is already the URL of document {holder[1]!r} of section {holder[0]!r}: a URL belongs to "
            "one document (delete that one, or change its loc, first)")


def load(manifest: Manifest, conn: Connection, hashes: Iterable[int]) -> dict[int, tuple[str, str]]:
    """The recorded claimant of each of these hashes that has one (through the driver: a batch asks for
    thousands)."""
    todo = sorted(set(hashes))  # in index order: neighbouring lookups share pages
    found: dict[int, tuple[str, str]] = {}
    with manifest._cursor(conn) as (cur, mark):
        if manifest.dialect == "postgresql":
            cur.execute(f"SELECT loc_hash, section, key FROM {loc_owners.name} WHERE loc_hash = ANY({mark})",
                        (todo,))
            return {int(h): (s, k) for h, s, k in cur.fetchall()}
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i:i + CHUNK]
            cur.execute(f"SELECT loc_hash, section, key FROM {loc_owners.name} WHERE loc_hash IN "
                        f"({', '.join(mark for _ in chunk)})", chunk)
            found.update({int(h): (s, k) for h, s, k in cur.fetchall()})
    return found


def current_loc(manifest: Manifest, conn: Connection, holder: Holder) -> str | None:
    """The URL `holder` is at in the manifest (its full row, or its shard's packs); None if it is not live."""
    with manifest._cursor(conn) as (cur, mark):
        cur.execute(f"SELECT shard_no, loc, xml IS NULL FROM documents WHERE section = {mark} AND key = {mark} "
                    "AND size > 0", (holder.section, holder.key))
        row = cur.fetchone()
        if row is None:
            return None
        shard_no, loc, packed = row
        if not packed:
            return str(loc)
        at, cols = manifest._packed(cur, mark, holder.section, shard_no)
        return str(cols[2][at[holder.key]])


def write(manifest: Manifest, conn: Connection, claims: dict[int, tuple[str, str]]) -> None:
    """Record these claims (a URL hash -> its document's section and key), replacing whatever row a hash had."""
    rows: list[tuple[Any, ...]] = [(h, section, key, None) for h, (section, key) in claims.items()]
    manifest.upsert(conn, loc_owners, ("loc_hash",), rows)


ClaimRun = tuple[str, int, Sequence[str], Sequence[int]]
"""(section, ord of its first document, keys, URL hashes): the claims of a rebuild's run, in source order."""


def load_claims(manifest: Manifest, conn: Connection, table: str, runs: Iterable[ClaimRun]) -> None:
    """Insert a rebuild's claims, unchecked (a unique index is built after, `Rebuilder._finish`). On SQLite a run
    goes as one JSON object that json_each turns into rows in C, in order (its `id` grows along the object)."""
    columns = ("loc_hash", "section", "key", "ord")
    if manifest.dialect == "postgresql":
        manifest.bulk_insert(conn, table, columns, [
            (h, section, key, first + i) for section, first, keys, hashes in runs
            for i, (key, h) in enumerate(zip(keys, hashes, strict=True))])
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT value, ?, key, ? + id FROM json_each(?)"
    for section, first, keys, hashes in runs:
        obj = dict(zip(keys, hashes, strict=True))
        if len(obj) == len(keys):
            raw.execute(insert, (section, first, orjson.dumps(obj)))
        else:  # a key repeats in the run (the rebuild keeps one copy later): an object would keep one
            manifest.bulk_insert(conn, table, columns, [
                (h, section, key, first + i) for i, (key, h) in enumerate(zip(keys, hashes, strict=True))])
