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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from struct import Struct
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, func, inspect, select, tuple_

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest import dead_letters as dead_letter_rows
from sitemap_keeper.snapshot.manifest.schema import loc_owners, loc_waiting

KEYS_PER_QUERY = 500  # hashes per IN (...) query
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
        for i in range(0, len(todo), KEYS_PER_QUERY):
            chunk = todo[i:i + KEYS_PER_QUERY]
            cur.execute(f"SELECT loc_hash, section, key FROM {loc_owners.name} WHERE loc_hash IN "
                        f"({', '.join(mark for _ in chunk)})", chunk)
            found.update({int(h): (s, k) for h, s, k in cur.fetchall()})
    return found


def current_loc(manifest: Manifest, conn: Connection, holder: Holder) -> str | None:
    """The URL `holder` is at in the manifest (its full row, or its shard's packs); None if it is not live."""
    return manifest.live_loc(conn, holder.section, holder.key)


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


Ident = tuple[str, str]


@dataclass(slots=True)
class Wait:
    """A claim waiting for a URL: the refused event and the dead letters it stands for."""

    loc_hash: int
    section: str
    key: str
    seq: int
    version: int | None
    loc: str
    source: str
    raw: bytes
    letters: list[int] = field(default_factory=list)  # ids of written dead letters
    fresh: list[int] = field(default_factory=list)  # indices of its batch's letters, not written yet
    stored: bool = False  # a row of the table (else made by this batch)

    @property
    def ident(self) -> Ident:
        return self.section, self.key

    @property
    def row_key(self) -> tuple[int, str, str]:
        return self.loc_hash, self.section, self.key


def replaces(version: int | None, older: int | None) -> bool:
    """Whether an event of `version` replaces a waiting claim of its key at `older` (no version: arrival order)."""
    return version is None or older is None or older <= version


_WAIT_COLUMNS = (loc_waiting.c.loc_hash, loc_waiting.c.section, loc_waiting.c.key, loc_waiting.c.seq,
                 loc_waiting.c.version, loc_waiting.c.loc, loc_waiting.c.source, loc_waiting.c.raw,
                 loc_waiting.c.letters)


def _wait(row: Sequence[Any]) -> Wait:
    h, section, key, seq, version, loc, source, raw, letters = row
    return Wait(int(h), section, key, int(seq), version, loc, source, bytes(raw),
                [int(i) for i in letters.split(",") if i], stored=True)


def waiting_index(conn: Connection) -> list[tuple[int, str, str]]:
    """(URL hash, section, key) of the claims waiting, up to INDEX_MAX + 1 of them."""
    query = select(loc_waiting.c.loc_hash, loc_waiting.c.section, loc_waiting.c.key).limit(INDEX_MAX + 1)
    return [(int(h), s, k) for h, s, k in conn.execute(query)]


def waiting_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(loc_waiting)).scalar_one())


def waiting_claims(manifest: Manifest) -> int:
    """How many claims wait for a URL (0 on a manifest made before the table was: opened to read only)."""
    with manifest.engine.connect() as conn:
        return waiting_count(conn) if inspect(conn).has_table(loc_waiting.name) else 0


def next_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(loc_waiting.c.seq), 0))).scalar_one()) + 1


def waiting_of(conn: Connection, idents: Iterable[Ident]) -> list[Wait]:
    """The waiting claims of these documents."""
    todo, found = sorted(set(idents)), list[Wait]()
    key = tuple_(loc_waiting.c.section, loc_waiting.c.key)
    for i in range(0, len(todo), KEYS_PER_QUERY):
        found += map(_wait, conn.execute(select(*_WAIT_COLUMNS).where(key.in_(todo[i:i + KEYS_PER_QUERY]))))
    return found


def waiting_for(conn: Connection, holders: Iterable[Ident]) -> list[tuple[Wait, Holder]]:
    """The waiting claims of the URLs these documents are recorded as holding, each with its holder."""
    todo, found = sorted(set(holders)), list[tuple[Wait, Holder]]()
    key = tuple_(loc_owners.c.section, loc_owners.c.key)
    query = select(*_WAIT_COLUMNS, loc_owners.c.section, loc_owners.c.key).join(
        loc_owners, loc_owners.c.loc_hash == loc_waiting.c.loc_hash)
    for i in range(0, len(todo), KEYS_PER_QUERY):
        found += [(_wait(row[:9]), Holder(row[9], row[10]))
                  for row in conn.execute(query.where(key.in_(todo[i:i + KEYS_PER_QUERY])))]
    return found


def write_waiting(conn: Connection, gone: Iterable[Wait], letters: Sequence[tuple[str, str, bytes] | None],
                  new: Sequence[Wait], withdrawn: Sequence[int]) -> None:
    """Delete the claims gone (applied or replaced); write this batch's claims' dead letters (None: withdrawn
    before written) and claims; delete the withdrawn letters."""
    rows = [w.row_key for w in gone]
    pk = tuple_(loc_waiting.c.loc_hash, loc_waiting.c.section, loc_waiting.c.key)
    for i in range(0, len(rows), KEYS_PER_QUERY):
        conn.execute(loc_waiting.delete().where(pk.in_(rows[i:i + KEYS_PER_QUERY])))
    ids = dead_letter_rows.add_each(conn, letters)
    if new:
        conn.execute(loc_waiting.insert(), [
            {"loc_hash": w.loc_hash, "section": w.section, "key": w.key, "seq": w.seq, "version": w.version,
             "loc": w.loc, "source": w.source[:200], "raw": w.raw,
             "letters": ",".join(map(str, w.letters + [ids[n] for n in w.fresh if ids[n] is not None]))}
            for w in new])
    dead_letter_rows.withdraw(conn, withdrawn, KEYS_PER_QUERY)
