"""The documents rows of the apply path, read and written through the database driver itself.

The apply path touches every event's row twice (read its state, write its new one), so it skips the SQLAlchemy
Core layer here and writes a stored row back where its read found it: by rowid on SQLite, by ctid on PostgreSQL
(the writer's lock keeps both valid until the commit). An update that keeps a document's shard then visits the
row's own page only, not the (section, key) index a generic upsert looks the row up in again, nor, on SQLite,
the (section, shard_no, key) one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.bulk import COPY_UPSERT_ROWS
from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY
from sitemap_keeper.snapshot.manifest.errors import ManifestDamaged
from sitemap_keeper.snapshot.manifest.schema import DOCUMENT_COLUMNS, documents

Ident = tuple[str, str]  # (section, key)
Stored = tuple[int | str, int | None, int | None, int, bool, int | None]
"""What the manifest holds for a document: (where: its rowid on SQLite, its ctid on PostgreSQL; shard_no,
version, size, live, URL hash)."""
ROWID: Final = 0  # positions in Stored; Stored[STORED_SHARD_NO:] is the state apply.py's Current holds
STORED_SHARD_NO: Final = 1
Row = tuple[Any, ...]  # a documents row, in DOCUMENT_COLUMNS order, its fields at these positions:
ROW_SECTION, ROW_KEY, ROW_SHARD_NO, ROW_VERSION, ROW_LOC, ROW_SIZE = map(
    DOCUMENT_COLUMNS.index, ("section", "key", "shard_no", "version", "loc", "size")
)

_LOAD = "SELECT {rowid}key, shard_no, version, size, size > 0, loc_hash FROM documents WHERE section = "
_COLUMNS = ", ".join(DOCUMENT_COLUMNS)
_INSERT = f"INSERT INTO documents ({_COLUMNS}) VALUES ({', '.join('?' * len(DOCUMENT_COLUMNS))})"
_SET = "version = ?, loc = ?, lastmod = ?, lastmod_ts = ?, size = ?, xml = ?, loc_hash = ? WHERE rowid = ?"
_SAME_SHARD = f"UPDATE documents SET {_SET}"
_MOVED = f"UPDATE documents SET shard_no = ?, {_SET}"
# PostgreSQL: the stored rows of a large batch go through COPY into this table (the documents columns, then the
# ctid the read found), then one UPDATE joined on the ctid, a TID scan per row; a few rows go one by one.
_AT_TABLE = "documents_at"
_AT_COLUMNS = DOCUMENT_COLUMNS[ROW_SHARD_NO:]
_AT_CREATE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_AT_TABLE} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(_AT_COLUMNS)}, ctid AS at FROM documents WITH NO DATA"
)
_AT_UPDATE = (
    f"UPDATE documents AS d SET {', '.join(f'{c} = t.{c}' for c in _AT_COLUMNS)} "
    f"FROM (SELECT * FROM {_AT_TABLE} ORDER BY at) AS t WHERE d.ctid = t.at"
)
_AT_ONE = f"UPDATE documents SET {', '.join(f'{c} = %s' for c in _AT_COLUMNS)} WHERE ctid = %s::tid"


def load(raw: Any, dialect: str, section: str, keys: Iterable[str]) -> dict[Ident, Stored]:
    """The stored state of these documents of one section (those the manifest has), through a driver
    connection (`raw`: sqlite3 or psycopg)."""
    found: dict[Ident, Stored] = {}
    if dialect == "postgresql":
        # `= ANY(array)` uses the unique index; a row-value IN over (section, key) scanned the table.
        with raw.cursor() as cur:
            cur.execute(_LOAD.format(rowid="ctid::text, ") + "%s AND key = ANY(%s)", (section, list(keys)))
            for at, k, n, v, size, live, h in cur:
                found[(section, k)] = (at, n, v, size, live, h)
        return found
    todo = sorted(keys)  # in index order: neighbouring lookups share pages
    for i in range(0, len(todo), KEYS_PER_QUERY):
        chunk = todo[i : i + KEYS_PER_QUERY]
        sql = f"{_LOAD.format(rowid='rowid, ')}? AND key IN ({','.join('?' * len(chunk))})"
        found.update(
            {
                (section, k): (rowid, n, v, size, live == 1, h)
                for rowid, k, n, v, size, live, h in raw.execute(sql, (section, *chunk))
            }
        )
    return found


def load_all(raw: Any, dialect: str, idents: Iterable[Ident]) -> dict[Ident, Stored]:
    by_section: dict[str, set[str]] = {}
    for section, key in idents:
        by_section.setdefault(section, set()).add(key)
    found: dict[Ident, Stored] = {}
    for section, keys in by_section.items():
        found.update(load(raw, dialect, section, keys))
    return found


def write(manifest: Manifest, conn: Connection, rows: Iterable[Row], stored: dict[Ident, Stored]) -> None:
    """Store the documents rows; `stored` says which exist and where (loaded in this transaction)."""
    if conn.dialect.name != "sqlite":
        _write_postgresql(manifest, conn, rows, stored)
        return
    new: list[Row] = []
    same: list[tuple[Any, ...]] = []
    moved: list[tuple[Any, ...]] = []
    for row in rows:  # the parameters of _SAME_SHARD and _MOVED: the row's columns from version or shard_no on
        old = stored.get((row[ROW_SECTION], row[ROW_KEY]))
        if old is None:
            new.append(row)
        elif old[STORED_SHARD_NO] == row[ROW_SHARD_NO]:
            same.append((*row[ROW_VERSION:], old[ROWID]))
        else:
            moved.append((*row[ROW_SHARD_NO:], old[ROWID]))
    raw = conn.connection.driver_connection
    assert raw is not None
    for sql, params in ((_SAME_SHARD, same), (_MOVED, moved)):
        if params:
            params.sort(key=lambda p: p[-1])  # rowid order: each table page is visited once
            raw.executemany(sql, params)
    if new:
        raw.executemany(_INSERT, new)


def _write_postgresql(manifest: Manifest, conn: Connection, rows: Iterable[Row], stored: dict[Ident, Stored]) -> None:
    new: list[Row] = []
    at: list[tuple[Any, ...]] = []  # a stored row's columns from shard_no on, then its ctid
    for row in rows:
        old = stored.get((row[ROW_SECTION], row[ROW_KEY]))
        if old is None:
            new.append(row)
        else:
            at.append((*row[ROW_SHARD_NO:], old[ROWID]))
    if at:
        if len(at) < COPY_UPSERT_ROWS:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.executemany(_AT_ONE, at)
                written = cur.rowcount
        else:
            written = manifest.bulk.through_table(conn, _AT_TABLE, _AT_CREATE, (*_AT_COLUMNS, "at"), at, _AT_UPDATE)
        if written != len(at):  # the batch rolls back whole
            raise ManifestDamaged(
                f"{len(at) - written} of the {len(at)} documents rows this batch read were changed before it wrote "
                "them: something writes the documents table outside the manifest's write lock"
            )
    if new:
        manifest.bulk.upsert(conn, documents, ("section", "key"), new)
