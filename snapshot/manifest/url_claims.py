"""The URL claims' tables: `loc_owners` (a URL's hash -> the document recorded as claiming it) and `loc_waiting`
(claims refused for a URL held, waiting for it). The rule they serve (who holds a URL, which waiting claim is
applied when) is snapshot/owners.py's; here are the reads and writes it is made of."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, func, inspect, select, tuple_

from sitemap_keeper.snapshot.manifest import dead_letters as dead_letter_rows
from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY
from sitemap_keeper.snapshot.manifest.schema import loc_owners, loc_waiting

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.manifest import Manifest


Ident = tuple[str, str]  # (section, key)

ClaimRun = tuple[str, int, Sequence[str], Sequence[int]]
"""(section, ord of its first document, keys, URL hashes): the claims of a rebuild's run, in source order."""


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


# -- loc_owners ------------------------------------------------------------------------------------------------


def holders(manifest: Manifest, conn: Connection, hashes: Iterable[int]) -> dict[int, tuple[str, str]]:
    """The recorded claimant (section, key) of each of these hashes that has one (through the driver: a batch
    asks for thousands)."""
    todo = sorted(set(hashes))  # in index order: neighbouring lookups share pages
    found: dict[int, tuple[str, str]] = {}
    with manifest.db.cursor(conn) as (cur, mark):
        if manifest.dialect == "postgresql":
            cur.execute(f"SELECT loc_hash, section, key FROM {loc_owners.name} WHERE loc_hash = ANY({mark})", (todo,))
            return {int(h): (s, k) for h, s, k in cur.fetchall()}
        for i in range(0, len(todo), KEYS_PER_QUERY):
            chunk = todo[i : i + KEYS_PER_QUERY]
            cur.execute(
                f"SELECT loc_hash, section, key FROM {loc_owners.name} WHERE loc_hash IN "
                f"({', '.join(mark for _ in chunk)})",
                chunk,
            )
            found.update({int(h): (s, k) for h, s, k in cur.fetchall()})
    return found


def record(manifest: Manifest, conn: Connection, claims: dict[int, tuple[str, str]]) -> None:
    """Record these claims (a URL hash -> its document's section and key), replacing whatever row a hash had."""
    rows: list[tuple[Any, ...]] = [(h, section, key, None) for h, (section, key) in claims.items()]
    manifest.bulk.upsert(conn, loc_owners, ("loc_hash",), rows)


def load_runs(manifest: Manifest, conn: Connection, table: str, runs: Iterable[ClaimRun]) -> None:
    """Insert a rebuild's claims into its staging `table`, unchecked (a unique index is built after,
    `Rebuilder._finish`). On SQLite a run goes as one JSON object that json_each turns into rows in C, in order
    (its `id` grows along the object)."""
    columns = ("loc_hash", "section", "key", "ord")
    if manifest.dialect == "postgresql":
        manifest.bulk.insert(
            conn,
            table,
            columns,
            [
                (h, section, key, first + i)
                for section, first, keys, hashes in runs
                for i, (key, h) in enumerate(zip(keys, hashes, strict=True))
            ],
        )
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT value, ?, key, ? + id FROM json_each(?)"
    for section, first, keys, hashes in runs:
        obj = dict(zip(keys, hashes, strict=True))
        if len(obj) == len(keys):
            raw.execute(insert, (section, first, orjson.dumps(obj)))
        else:  # a key repeats in the run (the rebuild keeps one copy later): an object would keep one
            manifest.bulk.insert(
                conn,
                table,
                columns,
                [(h, section, key, first + i) for i, (key, h) in enumerate(zip(keys, hashes, strict=True))],
            )


# -- loc_waiting -----------------------------------------------------------------------------------------------

_WAIT_COLUMNS = (
    loc_waiting.c.loc_hash,
    loc_waiting.c.section,
    loc_waiting.c.key,
    loc_waiting.c.seq,
    loc_waiting.c.version,
    loc_waiting.c.loc,
    loc_waiting.c.source,
    loc_waiting.c.raw,
    loc_waiting.c.letters,
)


def _wait(row: Sequence[Any]) -> Wait:
    h, section, key, seq, version, loc, source, raw, letters = row
    return Wait(
        int(h),
        section,
        key,
        int(seq),
        version,
        loc,
        source,
        bytes(raw),
        [int(i) for i in letters.split(",") if i],
        stored=True,
    )


def waiting_index(conn: Connection, limit: int) -> list[tuple[int, str, str]]:
    """(URL hash, section, key) of the claims waiting, up to `limit` of them."""
    query = select(loc_waiting.c.loc_hash, loc_waiting.c.section, loc_waiting.c.key).limit(limit)
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
        found += map(_wait, conn.execute(select(*_WAIT_COLUMNS).where(key.in_(todo[i : i + KEYS_PER_QUERY]))))
    return found


def waiting_for(conn: Connection, holders: Iterable[Ident]) -> list[tuple[Wait, Ident]]:
    """The waiting claims of the URLs these documents are recorded as holding, each with its holder."""
    todo, found = sorted(set(holders)), list[tuple[Wait, Ident]]()
    key = tuple_(loc_owners.c.section, loc_owners.c.key)
    query = select(*_WAIT_COLUMNS, loc_owners.c.section, loc_owners.c.key).join(
        loc_owners, loc_owners.c.loc_hash == loc_waiting.c.loc_hash
    )
    for i in range(0, len(todo), KEYS_PER_QUERY):
        found += [
            (_wait(row[:9]), (row[9], row[10]))
            for row in conn.execute(query.where(key.in_(todo[i : i + KEYS_PER_QUERY])))
        ]
    return found


def write_waiting(
    conn: Connection,
    gone: Iterable[Wait],
    letters: Sequence[tuple[str, str, bytes] | None],
    new: Sequence[Wait],
    withdrawn: Sequence[int],
) -> None:
    """Delete the claims gone (applied or replaced); write this batch's claims' dead letters (None: withdrawn
    before written) and claims; delete the withdrawn letters."""
    rows = [w.row_key for w in gone]
    pk = tuple_(loc_waiting.c.loc_hash, loc_waiting.c.section, loc_waiting.c.key)
    for i in range(0, len(rows), KEYS_PER_QUERY):
        conn.execute(loc_waiting.delete().where(pk.in_(rows[i : i + KEYS_PER_QUERY])))
    ids = dead_letter_rows.add_each(conn, letters)
    if new:
        conn.execute(
            loc_waiting.insert(),
            [
                {
                    "loc_hash": w.loc_hash,
                    "section": w.section,
                    "key": w.key,
                    "seq": w.seq,
                    "version": w.version,
                    "loc": w.loc,
                    "source": w.source[:200],
                    "raw": w.raw,
                    "letters": ",".join(map(str, w.letters + [ids[n] for n in w.fresh if ids[n] is not None])),
                }
                for w in new
            ],
        )
    dead_letter_rows.withdraw(conn, withdrawn, KEYS_PER_QUERY)
