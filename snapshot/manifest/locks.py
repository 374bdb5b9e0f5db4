"""The manifest's locks across processes and replicas: one publisher at a time, and a rebuild's hold on its tables.

Each dies with its holder: a PostgreSQL session advisory lock, or on SQLite flock(2) on a file beside the
database (no lock at all for an in-memory database, which only this process sees). Writers serialise on the
write transaction itself (`connection.Database.write`).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import Connection, text

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.errors import PublishLockHeld, RebuildRunning

PG_PUBLISH_LOCK = 0x517E_9B11  # pg_try_advisory_lock key: one publisher/pruner at a time
PG_REBUILD_LOCK = 0x517E_2EB1  # pg_try_advisory_lock key: a rebuild, from before it reads its source to its swap


class Locks:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def publish(self, patience: float = 0.0) -> Iterator[None]:
        """Held while publishing, rolling back, pruning or holding: one at a time across every replica."""
        with self._exclusive(
            "publish",
            PG_PUBLISH_LOCK,
            PublishLockHeld("another process is publishing or pruning this manifest"),
            patience,
        ):
            yield

    @contextmanager
    def rebuild(self) -> Iterator[None]:
        """Held by a rebuild from before it reads its source until its tables are swapped in.

        The swap replaces the documents table, so an event applied meanwhile would be lost: appliers check
        `rebuild_running` under the write lock and wait. An event applied before the lock was taken stands for
        a change its source already holds; one that waited is applied to the new tables.
        """
        # An applier's probe holds the file for a moment: try for a little while before calling it taken.
        with self._exclusive(
            "rebuild", PG_REBUILD_LOCK, RebuildRunning("another rebuild is running on this manifest"), patience=2.0
        ):
            yield

    def rebuild_running(self, conn: Connection | None = None) -> bool:
        """Whether a rebuild holds `rebuild` (in any process, on any replica)."""
        if self.db.dialect == "postgresql":
            query = text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted "
                "AND l.classid = 0 AND l.objid = :k AND l.objsubid = 1)"
            )
            with nullcontext(conn) if conn is not None else self.db.engine.connect() as c:
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
        """Lock `name` (PostgreSQL: advisory lock `pg_key`), trying for `patience` seconds before raising `taken`."""
        if self.db.dialect == "postgresql":
            with self.db.engine.connect() as conn:

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
        if self.db.dialect != "sqlite" or self.db.in_memory:
            return None
        return f"{self.db.engine.url.database}.{name}-lock"


def _take(attempt: Callable[[], bool], patience: float, taken: Exception) -> None:
    """Try to take a lock until it is taken or `patience` seconds have passed (then raise `taken`)."""
    deadline = time.monotonic() + patience
    while not attempt():
        if time.monotonic() >= deadline:
            raise taken
        time.sleep(0.05)
