"""Loading many rows fast, through the drivers' own bulk paths: COPY on PostgreSQL, executemany and json_each
on SQLite."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any

import orjson
from sqlalchemy import Connection, Table

from sitemap_keeper.snapshot.manifest.connection import Database

COPY_UPSERT_ROWS = 100  # PostgreSQL upserts of this many rows or more go through COPY
# The columns of a rebuild's documents rows (the content is in the packs), and the bits of an SQLite load's code
# that hold the size (below MAX_BYTES < 2**26); the version + 1 is above them (`load_documents`).
LOAD_COLUMNS = ("section", "key", "shard_no", "version", "size", "loc_hash")
SIZE_BITS = 26
HASH_WIDTH = 20  # bytes of a URL hash in an SQLite load's hash column: "-9223372036854775808" fits
_HASH_FORMAT = b"%20d"
DocumentRun = tuple[str, int, Sequence[str], Sequence[int | None], Sequence[int], Sequence[int]]
"""(section, shard_no, keys, versions, sizes, URL hashes): documents a rebuild put in one shard, in source
order."""


class BulkLoader:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows fast: COPY on PostgreSQL, a plain executemany on SQLite."""
        if not rows:
            return
        raw = conn.connection.driver_connection  # the driver's own bulk paths, inside this transaction
        assert raw is not None
        if self.db.dialect == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def load_documents(self, conn: Connection, table: str, runs: Iterable[DocumentRun]) -> None:
        """Insert a rebuild's documents rows (LOAD_COLUMNS), a run of them at a time.

        On SQLite a run goes as one JSON object that json_each turns into rows in C, about 0.3 µs a row:
        executemany's binding took 1.1 µs, the largest cost of the rebuild's main process. Its URL hashes go
        beside it as one blob of fixed-width decimals (`hash_column`), entry n read at json_each's rowid n. A
        run the object cannot carry (`json_rows`) goes through executemany.
        """
        if self.db.dialect == "postgresql":
            self.insert(conn, table, LOAD_COLUMNS, [row for run in runs for row in _load_rows(run)])
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        insert = (
            f"INSERT INTO {table} ({', '.join(LOAD_COLUMNS)}) SELECT ?, key, ?, NULLIF(value >> {SIZE_BITS}, "
            f"0) - 1, value & {(1 << SIZE_BITS) - 1}, CAST(substr(?, rowid * {HASH_WIDTH} + 1, {HASH_WIDTH}) AS "
            "INTEGER) FROM json_each(?)"
        )
        has_json = sqlite_json()
        for run in runs:
            data = json_rows(run) if has_json else None
            if data is None:
                self.insert(conn, table, LOAD_COLUMNS, list(_load_rows(run)))
            else:
                section, shard_no, _keys, _versions, _sizes, hashes = run
                raw.execute(insert, (section, shard_no, hash_column(hashes), data))

    def upsert(self, conn: Connection, table: Table, keys: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert or update many rows of `table` (all its columns, in order) by their unique `keys`."""
        if not rows:
            return
        cols = [c.name for c in table.c]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
        conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        if self.db.dialect == "postgresql" and len(rows) >= COPY_UPSERT_ROWS:
            # COPY into a temporary table and one INSERT ... SELECT: several times faster than executemany.
            tmp = f"upsert_{table.name}"
            create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {tmp} (LIKE {table.name}) ON COMMIT DELETE ROWS"
            self.through_table(
                conn, tmp, create, cols, rows, f"INSERT INTO {table.name} SELECT * FROM {tmp} {conflict}"
            )
            return
        mark = self.db.mark
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join(mark for _ in cols)}) {conflict}"
        conn.exec_driver_sql(sql, rows)

    def through_table(
        self, conn: Connection, table: str, create: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], sql: str
    ) -> int:
        """Put `rows` in the temporary `table` (made by `create` if missing), run `sql` over it, and return its row
        count. The table is emptied afterwards: the same rows may go through it again in this transaction."""
        conn.exec_driver_sql(create)
        self.insert(conn, table, columns, rows)
        count = conn.exec_driver_sql(sql).rowcount
        conn.exec_driver_sql(f"DELETE FROM {table}")
        return count


def _load_rows(run: DocumentRun) -> Iterator[tuple[str, str, int, int | None, int, int]]:
    section, shard_no, keys, versions, sizes, hashes = run
    return zip(repeat(section), keys, repeat(shard_no), versions, sizes, hashes)  # repeat() never runs out


def json_rows(run: DocumentRun) -> bytes | None:
    """The run as {key: size + (version + 1) << SIZE_BITS} (the size alone without a version); None when a key
    repeats (an object keeps one value per label: the rebuild resolves repeats later) or a code does not fit
    SQLite's 64-bit integers."""
    _section, _shard_no, keys, versions, sizes, _hashes = run
    if not sizes or max(sizes) >> SIZE_BITS:
        return None
    codes = sizes
    if versions.count(None) != len(versions):
        codes = [s if v is None else s + ((v + 1) << SIZE_BITS) for s, v in zip(sizes, versions, strict=True)]
        if max(codes) >> 63:
            return None
    obj = dict(zip(keys, codes, strict=True))
    return orjson.dumps(obj) if len(obj) == len(keys) else None


def hash_column(hashes: Sequence[int]) -> bytes:
    """URL hashes as one blob of decimals, each right-aligned in HASH_WIDTH bytes: hash n at byte n * HASH_WIDTH.
    SQLite reads one with `CAST(substr(blob, ...) AS INTEGER)` (substr counts bytes in a blob)."""
    return b"".join(map(_HASH_FORMAT.__mod__, hashes))


@functools.cache
def sqlite_json() -> bool:
    """Whether this SQLite has json_each (built in from 3.38, a compile-time option before), numbering an
    object's entries 0, 1, 2... in its rowid, as `load_documents` reads the hash column by it."""
    probe = sqlite3.connect(":memory:")
    try:
        rowids = [n for (n,) in probe.execute("""SELECT rowid FROM json_each('{"a": 1, "b": [2, 3], "c": {}}')""")]
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return rowids == [0, 1, 2]
