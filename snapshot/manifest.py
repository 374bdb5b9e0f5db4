"""The shard manifest: every document, the shard it lives in, and every generation published from it.

One SQLAlchemy schema serves SQLite (the embedded default) and PostgreSQL (production). A shard's `revision`
changes whenever its content does; a generation records, per file, the revision it was rendered from. A shard
is dirty exactly when its revision differs from the live generation's file: no dirty flag to keep in step,
and a rollback or an operator's manual switch needs no bookkeeping.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url

from sitemap_keeper.snapshot import packs

log = logging.getLogger(__name__)
metadata = MetaData()


def _name(length: int) -> String:
    """A section or key column: compared byte by byte on PostgreSQL too (COLLATE "C"), as on SQLite and by
    Python's sorted(). A shard then lists its documents in the same order whether read from its rows or from
    its packs, whatever the database's locale, and its indexes sort without the locale's rules."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


meta = Table(
    "sitemaps_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
sections = Table(
    "sections", metadata,
    Column("name", _name(64), primary_key=True),
    Column("open_shard", Integer, nullable=False),
)
shards = Table(
    "shards", metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("url_count", Integer, nullable=False),
    Column("byte_count", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
)
# A row whose size is 0 is a tombstone: it remembers a deleted document's version (so a late, older upsert
# is refused) and its shard (so the document gets its shard back if it returns). A live row whose xml is NULL
# is packed: a rebuild loaded it, and its content is in shard_packs (snapshot/packs.py). No primary key but a
# unique index, so a rebuild can bulk-load first and build its indexes after.
documents = Table(
    "documents", metadata,
    Column("section", _name(64), nullable=False),
    Column("key", _name(512), nullable=False),
    Column("shard_no", Integer),
    Column("version", BigInteger),
    Column("loc", String(2048)),
    Column("lastmod", String(40)),
    Column("lastmod_ts", Float),
    Column("size", Integer, nullable=False),
    Column("xml", Text),
)
DOCUMENT_COLUMNS = tuple(c.name for c in documents.c)
Index("ux_documents_key", documents.c.section, documents.c.key, unique=True)
Index("ix_documents_shard", documents.c.section, documents.c.shard_no, documents.c.key)

# A URL belongs to one document (snapshot/owners.py): loc_hash (a stable 64-bit hash of the loc) -> the document
# that claimed it. A row is a hint, checked when another document claims the URL: the holder must still be live
# and at that loc, else the URL was freed (deleted, URL changed) and the claimant takes it. `ord` orders a rebuild's
# claims as its source does. A unique index, no primary key: a rebuild loads first and indexes after.
loc_owners = Table(
    "loc_owners", metadata,
    Column("loc_hash", BigInteger, nullable=False),
    Column("section", _name(64), nullable=False),
    Column("key", _name(512), nullable=False),
    Column("ord", BigInteger),
)
Index("ux_loc_owners", loc_owners.c.loc_hash, unique=True)

# A document refused a URL another one holds waits for it (snapshot/owners.py): the refused event, kept until the
# URL is freed (then applied), a newer event of its key replaces it, or a rebuild. `seq`: oldest waiting first;
# `letters`: the ids of the dead letters it stands for, withdrawn once it is applied.
loc_waiting = Table(
    "loc_waiting", metadata,
    Column("loc_hash", BigInteger, primary_key=True),
    Column("section", _name(64), primary_key=True),
    Column("key", _name(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("version", BigInteger),
    Column("loc", String(2048), nullable=False),
    Column("source", String(200), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("letters", Text, nullable=False),
)
Index("ix_loc_waiting_key", loc_waiting.c.section, loc_waiting.c.key)

shard_packs = Table(
    "shard_packs", metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),  # the section's packs in source order
    # The shard's documents are entries [entry_from, entry_to) of the pack: a pack can span two shards.
    Column("entry_from", Integer, nullable=False),
    Column("entry_to", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

generations = Table(
    "generations", metadata,
    Column("id", String(40), primary_key=True),
    # building -> ready (verified, recorded) -> live -> retired -> pruned; or failed/abandoned.
    Column("state", String(16), nullable=False),
    Column("base_id", String(40)),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    Column("url_count", BigInteger, nullable=False, default=0),
    Column("file_count", Integer, nullable=False, default=0),
    Column("rendered", Integer, nullable=False, default=0),
    Column("copied", Integer, nullable=False, default=0),
)
generation_files = Table(
    "generation_files", metadata,
    Column("generation_id", String(40), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("url_count", Integer, nullable=False),
    Column("lastmod", String(40)),
    Column("lastmod_ts", Float),
    Column("section", String(64)),
    Column("shard_no", Integer),
    Column("revision", BigInteger),
)
# The news window (snapshot/news.py): every document's article, its news shard, and when each news file of a
# generation goes stale because its oldest article leaves the window.
news_articles = Table(
    "news_articles", metadata,
    Column("section", _name(64), primary_key=True),
    Column("key", _name(512), primary_key=True),
    Column("shard_no", Integer, nullable=False),
    Column("loc", String(2048), nullable=False),
    Column("published", String(40), nullable=False),
    Column("published_ts", Float, nullable=False),
    Column("xml", Text, nullable=False),
)
Index("ix_news_articles_published", news_articles.c.published_ts)
news_shards = Table(
    "news_shards", metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("article_count", Integer, nullable=False),
    Column("revision", BigInteger, nullable=False),
)
news_files = Table(
    "news_files", metadata,
    Column("generation_id", String(40), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("expires_at", Float, nullable=False),
)
dead_letters = Table(
    "dead_letters", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("source", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)

STAGING_SUFFIX = "_staging"
REVISION = "revision"
# The revision the last rebuild gave every shard. A shard still at it is exactly what its packs hold (no event
# has touched it since), so it renders from them alone: no read of its documents rows, no index needed.
PACKED_REVISION = "packed_revision"
PG_WRITE_LOCK = 0x517E_4D41  # pg_advisory_xact_lock key serialising manifest writers across replicas
PG_PUBLISH_LOCK = 0x517E_9B11  # pg_try_advisory_lock key: one publisher/pruner at a time
PG_REBUILD_LOCK = 0x517E_2EB1  # pg_try_advisory_lock key: a rebuild, from before it reads its source to its swap
# SQLite's page cache is per connection. The one connection writes go through gets 64 MiB (updates land on pages
# all over the table); every other gets 8 MiB. With 64 MiB each, the three or four connections `sitemaps run`
# reads through beside it (publish, render, diff, probes) took the service to 359 MiB, 282 MiB now
# (bench/bench_service_memory.py).
SQLITE_CACHE_KIB = 65_536
SQLITE_READ_CACHE_KIB = 8_192
# Copy the WAL back every 20,000 pages (80 MiB), not 1,000: consecutive batches touch many of the same pages, and
# each is then copied back once, not once per batch.
WAL_AUTOCHECKPOINT = 20_000
WRITER_WAIT = 600.0  # seconds a writer of this process waits for the write connection (SQLite itself waits 60)
COPY_UPSERT_ROWS = 100  # PostgreSQL upserts of this many rows or more go through COPY
# The columns of a rebuild's documents rows (the content is in the packs), and the bits of an SQLite load's code
# that hold the size (below MAX_BYTES < 2**26); the version + 1 is above them (`load_documents`).
LOAD_COLUMNS = ("section", "key", "shard_no", "version", "size")
SIZE_BITS = 26
DocumentRun = tuple[str, int, Sequence[str], Sequence[int | None], Sequence[int]]
"""(section, shard_no, keys, versions, sizes): documents a rebuild put in one shard, in source order."""


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


class PublishLockHeld(RuntimeError):
    """Another process is publishing or pruning right now."""


class RebuildRunning(RuntimeError):
    """A rebuild is loading this manifest: events are applied once it has swapped its tables in (or failed)."""


class NoManifest(RuntimeError):
    """A command that only reads was pointed at a database (or a path) that holds no manifest."""


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


# Tables are created in a write transaction: in a deferred one, SQLite refuses the CREATE at once ("database
# is locked", no waiting) when another connection, a replica's or a rebuild's, committed since its first read.
_created: weakref.WeakKeyDictionary[Engine, set[MetaData]] = weakref.WeakKeyDictionary()


class Manifest:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # Write transactions go through `writer`: on SQLite one connection of its own, with the big page cache.
        # An in-memory database exists once per connection, so it has no separate writer.
        self.writer = (connect(engine.url.render_as_string(hide_password=False), writer=True)
                        if self.dialect == "sqlite" and not self.in_memory else engine)
        self._copying: threading.Thread | None = None  # `_copy_back_soon`
        self.read_only = False  # `open_existing`: every write transaction is refused

    @classmethod
    def open(cls, database_url: str) -> Manifest:
        manifest = cls(connect(database_url))
        manifest.create()
        return manifest

    @classmethod
    def open_existing(cls, database_url: str) -> Manifest:
        """The manifest at `database_url` for reading only: nothing is created (not even an SQLite file) or
        changed; NoManifest when there is none there."""
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
                and not _sqlite_has_manifest(url.database):
            raise NoManifest(f"no manifest at {url.render_as_string(hide_password=True)}")
        manifest = cls(connect(database_url))
        manifest.read_only = True
        with manifest.engine.connect() as conn:
            found = inspect(conn).has_table(meta.name)
        if not found:
            manifest.close()
            raise NoManifest(f"no manifest at {url.render_as_string(hide_password=True)}")
        return manifest

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: private to this process (no workers, no lock files)."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    @property
    def worker_url(self) -> str | None:
        """The URL worker processes open the manifest with; None for an in-memory database."""
        return None if self.in_memory else self.engine.url.render_as_string(hide_password=False)

    def create(self) -> None:
        with self.write() as conn:
            metadata.create_all(conn)
            if conn.execute(select(meta.c.value).where(meta.c.name == REVISION)).first() is None:
                conn.execute(meta.insert().values(name=REVISION, value=0))

    def ensure_tables(self, md: MetaData) -> None:
        """Create a module's own tables on first use."""
        done = _created.setdefault(self.engine, set())
        if md not in done:
            with self.write() as conn:
                md.create_all(conn)
            done.add(md)

    def has_tables(self, md: MetaData, conn: Connection | None = None) -> bool:
        """Whether a module's own tables exist; never creates them (for readers)."""
        done = _created.setdefault(self.engine, set())
        if md not in done:
            with self._conn(conn) as c:
                found = all(inspect(c).has_table(t.name) for t in md.tables.values())
            if not found:
                return False
            done.add(md)
        return True

    def close(self) -> None:
        if self._copying is not None:
            self._copying.join()
        self.writer.dispose()
        self.engine.dispose()

    # -- transactions ---------------------------------------------------------------------------------------

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
                    with self._cursor(conn) as (cur, _mark):
                        cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        if defer:
            self._copy_back_soon()

    def _copy_back_soon(self) -> None:
        """Copy the WAL back into the database file on a thread of its own. A passive checkpoint blocks neither
        readers nor the writer; a writer's own checkpoint meanwhile gives way to it. Crash-safe like any other:
        until a page is copied back, the WAL holds it. Interpreter exit and `close` wait for it."""
        def run() -> None:
            try:
                with self.engine.connect() as conn, self._cursor(conn) as (cur, _mark):
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
    def publish_lock(self, patience: float = 0.0) -> Iterator[None]:
        """Held while publishing, rolling back, pruning or holding: one at a time across every replica."""
        with self._exclusive("publish", PG_PUBLISH_LOCK,
                             PublishLockHeld("another process is publishing or pruning this manifest"), patience):
            yield

    @contextmanager
    def rebuild_lock(self) -> Iterator[None]:
        """Held by a rebuild from before it reads its source until its tables are swapped in.

        The swap replaces the documents table, so an event applied meanwhile would be lost: appliers check
        `rebuild_running` under the write lock and wait. An event applied before the lock was taken stands for
        a change its source already holds; one that waited is applied to the new tables.
        """
        # An applier's probe holds the file for a moment: try for a little while before calling it taken.
        with self._exclusive("rebuild", PG_REBUILD_LOCK, RebuildRunning("another rebuild is running on this manifest"),
                             patience=2.0):
            yield

    def rebuild_running(self, conn: Connection | None = None) -> bool:
        """Whether a rebuild holds `rebuild_lock` (in any process, on any replica)."""
        if self.dialect == "postgresql":
            query = text("SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                         "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted "
                         "AND l.classid = 0 AND l.objid = :k AND l.objsubid = 1)")
            with nullcontext(conn) if conn is not None else self.engine.connect() as c:
                return bool(c.execute(query, {"k": PG_REBUILD_LOCK}).scalar())
        path = self._lock_path("rebuild")
        if path is None:
            return False
        with open(path, "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False

    @contextmanager
    def _exclusive(self, name: str, pg_key: int, taken: Exception, patience: float = 0.0) -> Iterator[None]:
        """A lock that dies with its holder: a PostgreSQL session advisory lock, or on SQLite flock(2) on a file
        beside the database (no lock at all for an in-memory database, which only this process sees)."""
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:

                def try_pg() -> bool:
                    got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": pg_key}).scalar())
                    conn.commit()
                    return got

                _take(try_pg, patience, taken)
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": pg_key})
                    conn.commit()
            return
        path = self._lock_path(name)
        if path is None:
            yield
            return
        with open(path, "a+b") as f:

            def try_flock() -> bool:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            _take(try_flock, patience, taken)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _lock_path(self, name: str) -> str | None:
        """The file an SQLite manifest's lock `name` is held on; None where there is none to hold."""
        if self.dialect != "sqlite" or self.in_memory:
            return None
        return f"{self.engine.url.database}.{name}-lock"

    @staticmethod
    def mark_rebuilt(conn: Connection, revision: int) -> None:
        """Every shard is at `revision` and holds exactly its packs' documents (in the rebuild's swap)."""
        conn.execute(meta.delete().where(meta.c.name == PACKED_REVISION))
        conn.execute(meta.insert().values(name=PACKED_REVISION, value=revision))

    @staticmethod
    def next_revision(conn: Connection) -> int:
        conn.execute(meta.update().where(meta.c.name == REVISION).values(value=meta.c.value + 1))
        return int(conn.execute(select(meta.c.value).where(meta.c.name == REVISION)).scalar_one())

    # -- bulk writes ----------------------------------------------------------------------------------------

    def bulk_insert(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
                    ) -> None:
        """Insert many rows fast: COPY on PostgreSQL, a plain executemany on SQLite."""
        if not rows:
            return
        raw = conn.connection.driver_connection  # the driver's own bulk paths, inside this transaction
        assert raw is not None
        if self.dialect == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def load_documents(self, conn: Connection, table: str, runs: Iterable[DocumentRun]) -> None:
        """Insert a rebuild's documents rows (LOAD_COLUMNS), a run of them at a time.

        On SQLite a run goes as one JSON object that json_each turns into rows in C, about 0.3 µs a row:
        executemany's binding took 1.1 µs, the largest cost of the rebuild's main process. A run the object
        cannot carry (`_json_rows`) goes through executemany.
        """
        if self.dialect == "postgresql":
            self.bulk_insert(conn, table, LOAD_COLUMNS, [row for run in runs for row in _load_rows(run)])
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        insert = (f"INSERT INTO {table} ({', '.join(LOAD_COLUMNS)}) SELECT ?, key, ?, NULLIF(value >> {SIZE_BITS}, "
                  f"0) - 1, value & {(1 << SIZE_BITS) - 1} FROM json_each(?)")
        has_json = _sqlite_json()
        for run in runs:
            data = _json_rows(run) if has_json else None
            if data is None:
                self.bulk_insert(conn, table, LOAD_COLUMNS, list(_load_rows(run)))
            else:
                raw.execute(insert, (run[0], run[1], data))

    def upsert(self, conn: Connection, table: Table, keys: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert or update many rows of `table` (all its columns, in order) by their unique `keys`."""
        if not rows:
            return
        cols = [c.name for c in table.c]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
        conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        if self.dialect == "postgresql" and len(rows) >= COPY_UPSERT_ROWS:
            # COPY into a temporary table and one INSERT ... SELECT: several times faster than executemany.
            tmp = f"upsert_{table.name}"
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {tmp} (LIKE {table.name}) "
                                 "ON COMMIT DELETE ROWS")
            self.bulk_insert(conn, tmp, cols, rows)
            conn.exec_driver_sql(f"INSERT INTO {table.name} SELECT * FROM {tmp} {conflict}")
            conn.exec_driver_sql(f"DELETE FROM {tmp}")  # the same table may be upserted again in this transaction
            return
        mark = "?" if self.dialect == "sqlite" else "%s"
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join(mark for _ in cols)}) {conflict}"
        conn.exec_driver_sql(sql, rows)

    # -- reads ----------------------------------------------------------------------------------------------

    def shards(self, conn: Connection | None = None) -> list[Shard]:
        query = select(shards).order_by(shards.c.section, shards.c.shard_no)
        with self._conn(conn) as c:
            return [Shard(*row) for row in c.execute(query)]

    def shard_rows(self, conn: Connection, section: str, shard_no: int
                   ) -> tuple[list[str], list[str | None], list[float | None]]:
        """xml, lastmod and lastmod_ts of the live documents of one shard, in a stable order (by key), as columns."""
        with self._cursor(conn) as (cur, mark):  # fetched by the driver in C: a shard is 50,000 rows
            as_rebuilt = self._as_rebuilt(cur, mark, section, shard_no)
            if as_rebuilt is not None:
                return as_rebuilt
            cur.execute("SELECT key, xml, lastmod, lastmod_ts FROM documents "
                        f"WHERE section = {mark} AND shard_no = {mark} AND size > 0 ORDER BY key",
                        (section, shard_no))
            rows = cur.fetchall()
            if not rows:
                return [], [], []
            keys, xmls, lastmods, stamps = (list(col) for col in zip(*rows, strict=True))
            packed = [i for i, xml in enumerate(xmls) if xml is None]
            if packed:  # their content is in the shard's packs
                at, cols = self._packed(cur, mark, section, shard_no)
                pxmls, plastmods, pstamps = cols[6], cols[3], cols[4]
                for i in packed:
                    p = at[keys[i]]
                    xmls[i], lastmods[i], stamps[i] = pxmls[p], plastmods[p], pstamps[p]
            return xmls, lastmods, stamps  # every xml filled in above

    def _as_rebuilt(self, cur: Any, mark: str, section: str, shard_no: int
                    ) -> tuple[list[str], list[str | None], list[float | None]] | None:
        """A shard no event touched since the last rebuild, from its packs alone, in the same order; None for any
        other shard, or one whose packs do not hold exactly its URL count (the documents rows decide then)."""
        cur.execute(f"SELECT s.url_count FROM shards s JOIN {meta.name} m ON m.name = {mark} "
                    f"AND m.value = s.revision WHERE s.section = {mark} AND s.shard_no = {mark}",
                    (PACKED_REVISION, section, shard_no))
        found = cur.fetchone()
        if found is None:
            return None
        xmls, lastmods, stamps = self._from_packs(cur, mark, section, shard_no)
        return (xmls, lastmods, stamps) if len(xmls) == found[0] else None

    @staticmethod
    def _from_packs(cur: Any, mark: str, section: str, shard_no: int
                    ) -> tuple[list[str], list[str | None], list[float | None]]:
        keys, _versions, _locs, lastmods, stamps, _sizes, xmls = Manifest._pack_columns(cur, mark, section, shard_no)
        # Blank keys are copies of a repeated key that the rebuild dropped (`packs.without`).
        order = sorted((i for i, key in enumerate(keys) if key), key=keys.__getitem__)
        return [xmls[i] for i in order], [lastmods[i] for i in order], [stamps[i] for i in order]

    def _packed(self, cur: Any, mark: str, section: str, shard_no: int) -> tuple[_Positions, packs.Columns]:
        """The columns of one shard's packs, and where each key is in them (a later copy wins); every packed
        row of the shard must be there."""
        cols = self._pack_columns(cur, mark, section, shard_no)
        return _Positions(section, shard_no, zip(cols[0], range(len(cols[0])), strict=True)), cols

    @staticmethod
    def _pack_columns(cur: Any, mark: str, section: str, shard_no: int) -> packs.Columns:
        """The columns of one shard's entries in its packs, in source order."""
        cur.execute(f"SELECT entry_from, entry_to, data FROM {shard_packs.name} "
                    f"WHERE section = {mark} AND shard_no = {mark} ORDER BY seq", (section, shard_no))
        return packs.shard_columns([(a, b, bytes(data)) for a, b, data in cur.fetchall()])

    @contextmanager
    def _cursor(self, conn: Connection) -> Iterator[tuple[Any, str]]:
        """A cursor of the driver itself, inside `conn`'s transaction, and its parameter mark."""
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            yield cur, "?" if self.dialect == "sqlite" else "%s"
        finally:
            cur.close()

    def url_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(shards.c.url_count), 0))).scalar_one())

    def section_counts(self) -> dict[str, tuple[int, int]]:
        """section -> (shards with URLs, URLs)."""
        query = (
            select(shards.c.section, func.count(), func.sum(shards.c.url_count))
            .where(shards.c.url_count > 0)
            .group_by(shards.c.section)
            .order_by(shards.c.section)
        )
        with self.engine.connect() as conn:
            return {s: (int(n), int(u)) for s, n, u in conn.execute(query)}

    def documents(self) -> Iterator[tuple[str, str, str, str | None]]:
        """(section, key, loc, lastmod) of every live document, a shard at a time."""
        with self.read() as conn, self._cursor(conn) as (cur, mark):
            for shard in self.shards(conn):
                cur.execute("SELECT key, loc, lastmod, xml IS NULL FROM documents "
                            f"WHERE section = {mark} AND shard_no = {mark} AND size > 0",
                            (shard.section, shard.shard_no))
                rows = cur.fetchall()
                at, cols = self._packed(cur, mark, shard.section, shard.shard_no) if any(r[3] for r in rows) \
                    else (_Positions(shard.section, shard.shard_no, ()), [])
                for key, loc, lastmod, is_packed in rows:
                    if is_packed:
                        p = at[key]
                        loc, lastmod = cols[2][p], cols[3][p]
                    yield shard.section, key, loc, lastmod

    # -- generations ----------------------------------------------------------------------------------------

    def begin_generation(self, gen_id: str, base_id: str | None) -> None:
        with self.write() as conn:
            conn.execute(generations.insert().values(
                id=gen_id, state="building", base_id=base_id, created_at=time.time(),
                url_count=0, file_count=0, rendered=0, copied=0,
            ))

    def record_generation(self, gen_id: str, files: Iterable[FileRecord], rendered: int, copied: int) -> None:
        """Store a verified generation's files; it becomes `ready`, eligible for the router."""
        records = list(files)
        with self.write() as conn:
            conn.execute(generation_files.delete().where(generation_files.c.generation_id == gen_id))
            if records:
                conn.execute(generation_files.insert(), [{"generation_id": gen_id, **_asdict(f)} for f in records])
            conn.execute(generations.update().where(generations.c.id == gen_id).values(
                state="ready",
                url_count=sum(f.url_count for f in records if f.shard_no is not None),
                file_count=len(records), rendered=rendered, copied=copied,
            ))

    def set_state(self, gen_id: str, state: str) -> None:
        values: dict[str, Any] = {"state": state}
        if state == "live":
            values["published_at"] = time.time()
        with self.write() as conn:
            if state == "live":
                conn.execute(generations.update()
                             .where(generations.c.state == "live", generations.c.id != gen_id)
                             .values(state="retired"))
            conn.execute(generations.update().where(generations.c.id == gen_id).values(**values))

    def generation(self, gen_id: str) -> Generation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(generations).where(generations.c.id == gen_id)).first()
        return Generation(*row) if row else None

    def generations(self) -> list[Generation]:
        with self.engine.connect() as conn:
            return [Generation(*r) for r in conn.execute(select(generations).order_by(generations.c.id))]

    def files(self, gen_id: str) -> dict[str, FileRecord]:
        query = select(*[c for c in generation_files.c if c.name != "generation_id"]).where(
            generation_files.c.generation_id == gen_id
        )
        with self.engine.connect() as conn:
            return {row[0]: FileRecord(*row) for row in conn.execute(query)}

    def latest_generation_id(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(generations.c.id))).scalar()

    # -- dead letters ---------------------------------------------------------------------------------------

    @staticmethod
    def add_dead_letters(conn: Connection, letters: Sequence[tuple[str, str, bytes]]) -> None:
        """Record refused input: (source, reason, raw bytes). Never silently dropped."""
        if letters:
            now = time.time()
            conn.execute(dead_letters.insert(), [
                {"created_at": now, "source": s[:200], "reason": r, "raw": raw} for s, r, raw in letters
            ])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        query = select(dead_letters).order_by(dead_letters.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]

    def dead_letter_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(dead_letters)).scalar_one())

    # -- helpers --------------------------------------------------------------------------------------------

    @contextmanager
    def _conn(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as c:
                yield c


def _load_rows(run: DocumentRun) -> Iterator[tuple[str, str, int, int | None, int]]:
    section, shard_no, keys, versions, sizes = run
    return zip(repeat(section), keys, repeat(shard_no), versions, sizes)  # repeat() never runs out


def _json_rows(run: DocumentRun) -> bytes | None:
    """The run as {key: size + (version + 1) << SIZE_BITS} (the size alone without a version); None when a key
    repeats (an object keeps one value per label: the rebuild resolves repeats later) or a code does not fit
    SQLite's 64-bit integers."""
    _section, _shard_no, keys, versions, sizes = run
    if not sizes or max(sizes) >> SIZE_BITS:
        return None
    codes = sizes
    if versions.count(None) != len(versions):
        codes = [s if v is None else s + ((v + 1) << SIZE_BITS) for s, v in zip(sizes, versions, strict=True)]
        if max(codes) >> 63:
            return None
    obj = dict(zip(keys, codes, strict=True))
    return orjson.dumps(obj) if len(obj) == len(keys) else None


@functools.cache
def _sqlite_json() -> bool:
    """Whether this SQLite has json_each (built in from 3.38, a compile-time option before)."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT key FROM json_each('{}')")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


class _Positions(dict[str, int]):
    """Where each key of a shard's packs is in their columns; a key missing from them means the manifest is
    damaged, and says where."""

    def __init__(self, section: str, shard_no: int, found: Iterable[tuple[str, int]]) -> None:
        super().__init__(found)
        self.where = f"shard {shard_no} of section {section}"

    def __missing__(self, key: str) -> int:
        raise ManifestDamaged(f"document {key!r} of {self.where} is packed, but no pack of the shard holds it")


def _sqlite_has_manifest(path: str) -> bool:
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


class ReadOnly(RuntimeError):
    """A write to a manifest opened for reading only (`Manifest.open_existing`)."""


class ManifestDamaged(RuntimeError):
    """The manifest contradicts itself (it was changed by hand, or a store lost data)."""


def _take(attempt: Callable[[], bool], patience: float, taken: Exception) -> None:
    """Try to take a lock until it is taken or `patience` seconds have passed (then raise `taken`)."""
    deadline = time.monotonic() + patience
    while not attempt():
        if time.monotonic() >= deadline:
            raise taken
        time.sleep(0.05)


def _asdict(record: FileRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
