"""Engines and transactions: how the manifest's database is opened, read and written.

On SQLite every write transaction goes through one connection of its own (`Database.writer`), begun IMMEDIATE,
with a big page cache; readers get WAL snapshots beside it. On PostgreSQL writers serialise on an advisory
transaction lock and readers see one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import urllib.parse
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from sitemap_keeper.snapshot.manifest.errors import ReadOnly
from sitemap_keeper.snapshot.manifest.schema import meta

log = logging.getLogger(__name__)

PG_WRITE_LOCK = 0x517E_4D41  # pg_advisory_xact_lock key serialising manifest writers across replicas
# SQLite's page cache is per connection. The one connection writes go through gets 64 MiB (updates land on pages
# all over the table); every other gets 8 MiB, so the three or four connections `sitemaps run` reads through
# beside it (publish, render, diff, probes) do not multiply the service's memory (bench/bench_service_memory.py;
# figures in docs/performance.md).
SQLITE_CACHE_KIB = 65_536
SQLITE_READ_CACHE_KIB = 8_192
# Copy the WAL back every 20,000 pages (80 MiB), not 1,000: consecutive batches touch many of the same pages, and
# each is then copied back once, not once per batch.
KEYS_PER_QUERY = 500  # keys, hashes or ids per IN (...) query: well below every database's parameter limit
WAL_AUTOCHECKPOINT = 20_000
WRITER_WAIT = 600.0  # seconds a writer of this process waits for the write connection (SQLite itself waits 60)

# Tables are created in a write transaction: in a deferred one, SQLite refuses the CREATE at once ("database
# is locked", no waiting) when another connection, a replica's or a rebuild's, committed since its first read.
_created: weakref.WeakKeyDictionary[Engine, set[MetaData]] = weakref.WeakKeyDictionary()


def connect(database_url: str, writer: bool = False) -> Engine:
    """An engine on the manifest; on SQLite, `writer` makes it the one connection write transactions use."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        cache_kib = SQLITE_CACHE_KIB if writer else SQLITE_READ_CACHE_KIB
        # Writers queue for the one connection here as they would for SQLite's write lock anyway.
        pool: dict[str, Any] = {"pool_size": 1, "max_overflow": 0, "pool_timeout": WRITER_WAIT} if writer else {}
        engine = create_engine(url, connect_args={"timeout": 60}, **pool)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            # WAL lets readers (publish, serve, status) proceed while events are applied.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA cache_size=-{cache_kib}")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            # Freed pages are not overwritten with zeros (Debian's SQLite defaults to secure_delete on): a rebuild's
            # swap drops the old tables, which would otherwise write every one of their pages again.
            cur.execute("PRAGMA secure_delete=FAST")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front so two of them never interleave read-modify-write cycles;
            # readers get a deferred transaction, a consistent snapshot from their first read on.
            immediate = conn.get_execution_options().get("sqlite_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """The manifest's engines and its read and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # Write transactions go through `writer`: on SQLite one connection of its own, with the big page cache.
        # An in-memory database exists once per connection, so it has no separate writer.
        self.writer = (
            connect(engine.url.render_as_string(hide_password=False), writer=True)
            if self.dialect == "sqlite" and not self.in_memory
            else engine
        )
        self._copying: threading.Thread | None = None  # `_copy_back_soon`
        self.read_only = False  # `Manifest.open_existing`: every write transaction is refused

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: private to this process (no workers, no lock files)."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    @property
    def mark(self) -> str:
        """The driver's parameter mark."""
        return "?" if self.dialect == "sqlite" else "%s"

    def close(self) -> None:
        if self._copying is not None:
            self._copying.join()
        self.writer.dispose()
        self.engine.dispose()

    @contextmanager
    def write(self, copy_back: bool = True) -> Iterator[Connection]:
        """A write transaction, serialised against every other writer of this manifest.

        `copy_back=False` is for a transaction that writes hundreds of MB (a rebuild's index builds): on SQLite its
        commit then leaves copying the WAL back into the database file to a thread (`_copy_back_soon`), so what
        comes next need not wait for it.
        """
        if self.read_only:
            raise ReadOnly("this command only reads the manifest")
        defer = not copy_back and self.dialect == "sqlite" and not self.in_memory
        with self.writer.connect() as conn:
            conn.execution_options(sqlite_write=True)
            if self.dialect == "postgresql":
                # Whatever the server's default: each statement after the lock then sees what the writer before
                # committed (a snapshot taken before the lock was granted would not, and apply reads, then
                # writes the rows where it read them).
                conn.execution_options(isolation_level="READ COMMITTED")
            try:
                with conn.begin():
                    if defer:
                        conn.exec_driver_sql("PRAGMA wal_autocheckpoint = 0")
                    if self.dialect == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITE_LOCK})
                    yield conn
            finally:
                # Through the driver's cursor: through SQLAlchemy, the statement would begin a transaction.
                if defer and not conn.invalidated:
                    with self.cursor(conn) as (cur, _mark):
                        cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        if defer:
            self._copy_back_soon()

    def _copy_back_soon(self) -> None:
        """Copy the WAL back into the database file on a thread of its own. A passive checkpoint blocks neither
        readers nor the writer; a writer's own checkpoint meanwhile gives way to it. Crash-safe like any other:
        until a page is copied back, the WAL holds it. Interpreter exit and `close` wait for it."""

        def run() -> None:
            try:
                with self.engine.connect() as conn, self.cursor(conn) as (cur, _mark):
                    cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the next commits copy back what is left
                log.warning("copying the WAL back into %s failed", self.engine.url.database, exc_info=True)

        if self._copying is not None:  # one at a time (a second rebuild in this process), so `close` waits for all
            self._copying.join()
        self._copying = threading.Thread(target=run, name="sitemaps-checkpoint")
        self._copying.start()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction that sees one consistent state of the manifest."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def cursor(self, conn: Connection) -> Iterator[tuple[Any, str]]:
        """A cursor of the driver itself, inside `conn`'s transaction, and its parameter mark."""
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            yield cur, self.mark
        finally:
            cur.close()

    def ensure(self, table: Table) -> None:
        """Create a table made on first use (schema.py) if it is not there yet."""
        done = _created.setdefault(self.engine, set())
        if table.metadata not in done:
            with self.write() as conn:
                table.metadata.create_all(conn)
            done.add(table.metadata)

    def has(self, table: Table, conn: Connection | None = None) -> bool:
        """Whether a table made on first use exists; never creates it (for readers)."""
        done = _created.setdefault(self.engine, set())
        if table.metadata not in done:
            with self.connection(conn) as c:
                found = all(inspect(c).has_table(t.name) for t in table.metadata.tables.values())
            if not found:
                return False
            done.add(table.metadata)
        return True

    @contextmanager
    def connection(self, conn: Connection | None) -> Iterator[Connection]:
        """`conn`, or a connection of its own when None."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as c:
                yield c


def sqlite_has_manifest(path: str) -> bool:
    """Whether the SQLite file at `path` exists and holds a manifest, looked at read-only (nothing created)."""
    if not os.path.isfile(path):
        return False
    probe = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True)
    try:
        found = probe.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (meta.name,)).fetchone()
    except sqlite3.DatabaseError:  # not an SQLite database at all
        return False
    finally:
        probe.close()
    return found is not None
