"""The documents rows of the apply path, read and written through the database driver itself.

The apply path touches every event's row twice (read its state, write its new one), so it skips the SQLAlchemy
Core layer here and, on SQLite, writes by rowid: an update that keeps a document's shard then rewrites the row's
own page only, not the (section, key) or (section, shard_no, key) index pages a generic upsert also visits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY
from sitemap_keeper.snapshot.manifest.schema import DOCUMENT_COLUMNS, documents

Ident = tuple[str, str]  # (section, key)
Stored = tuple[int | None, int | None, int | None, int, bool, int | None]
"""What the manifest holds for a document: (rowid on SQLite else None, shard_no, version, size, live, URL hash)."""
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


def load(raw: Any, dialect: str, section: str, keys: Iterable[str]) -> dict[Ident, Stored]:
    """The stored state of these documents of one section (those the manifest has), through a driver
    connection (`raw`: sqlite3 or psycopg)."""
    found: dict[Ident, Stored] = {}
    if dialect == "postgresql":
        # `= ANY(array)` uses the unique index; a row-value IN over (section, key) scanned the table.
        with raw.cursor() as cur:
            cur.execute(_LOAD.format(rowid="") + "%s AND key = ANY(%s)", (section, list(keys)))
            for k, n, v, size, live, h in cur:
                found[(section, k)] = (None, n, v, size, live, h)
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
    """Store the documents rows; `stored` says which exist (loaded in this transaction)."""
    if conn.dialect.name != "sqlite":
        manifest.upsert(conn, documents, ("section", "key"), list(rows))
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
