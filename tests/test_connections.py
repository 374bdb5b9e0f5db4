"""On SQLite, writes go through one connection with the big page cache; every other connection gets a small
one, so the connections `sitemaps run` reads through beside the applying one do not multiply its memory
(bench/bench_service_memory.py; figures in docs/performance.md). On PostgreSQL, writers run at READ COMMITTED
whatever the server's default."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, make_url

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.connection import SQLITE_CACHE_KIB, SQLITE_READ_CACHE_KIB, WAL_AUTOCHECKPOINT
from sitemap_keeper.snapshot.settings import Settings
from tests.conftest import fresh_pg_database
from tests.service_helpers import HOST, rebuild_with
from tests.service_helpers import event as change


def test_writes_share_one_connection_with_the_big_cache(tmp_path: Path) -> None:
    manifest = Manifest.open(f"sqlite:///{tmp_path / 'manifest.db'}")
    try:
        seen: list[tuple[int, int]] = []

        def write() -> None:
            with manifest.write() as conn:
                raw = conn.connection.driver_connection
                seen.append((id(raw), conn.exec_driver_sql("PRAGMA cache_size").scalar_one()))

        with manifest.read() as reading:  # a reader open meanwhile does not hold the writers up
            threads = [threading.Thread(target=write) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert reading.exec_driver_sql("PRAGMA cache_size").scalar_one() == -SQLITE_READ_CACHE_KIB
        assert len(seen) == 4 and len({raw for raw, _ in seen}) == 1, seen
        assert {size for _, size in seen} == {-SQLITE_CACHE_KIB}
        with manifest.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -SQLITE_READ_CACHE_KIB
    finally:
        manifest.close()


def test_dropping_a_table_does_not_write_its_pages_again(tmp_path: Path) -> None:
    """secure_delete FAST on every connection: a rebuild's swap drops the old tables without zeroing their pages
    through the WAL (a build with SQLITE_SECURE_DELETE, as Debian's, would write all of them again)."""
    m = Manifest.open(f"sqlite:///{tmp_path / 'm.db'}")
    with m.write() as conn:
        conn.exec_driver_sql("CREATE TABLE big (x TEXT)")
        conn.exec_driver_sql(
            "INSERT INTO big WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
            "WHERE i < 19999) SELECT printf('%0500d', i) FROM s"
        )  # about 10 MB, 2,500 pages
    with m.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 2  # FAST
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    with m.write() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 2
        conn.exec_driver_sql("DROP TABLE big")
    assert (tmp_path / "m.db-wal").stat().st_size < 1_000_000  # the freelist's pages, not 10 MB of zeros
    m.close()


def test_an_in_memory_manifest_writes_where_it_reads() -> None:
    manifest = Manifest.open("sqlite://")
    try:
        with manifest.write() as conn:
            conn.exec_driver_sql("CREATE TABLE notes (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO notes VALUES (1)")
        with manifest.read() as conn:
            assert conn.exec_driver_sql("SELECT n FROM notes").scalar_one() == 1
    finally:
        manifest.close()


def test_a_big_write_is_copied_back_by_a_thread_not_by_its_commit(tmp_path: Path) -> None:
    """A rebuild's index builds write hundreds of MB; `write(copy_back=False)` leaves their checkpoint to a thread,
    so the publish after it does not wait. The database file must still get every page."""
    path = tmp_path / "manifest.db"
    manifest = Manifest.open(f"sqlite:///{path}")
    # Open beside the manifest's connections, so closing those is not the last close (which checkpoints itself).
    bystander = sqlite3.connect(path)
    bystander.execute("SELECT count(*) FROM sqlite_master").fetchall()  # attached to the WAL from now on
    try:
        with manifest.write(copy_back=False) as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
            conn.exec_driver_sql("CREATE TABLE notes (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO notes VALUES (1), (2), (3)")
        with manifest.write() as conn:  # the writer's own checkpoints are back for the next transactions
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == WAL_AUTOCHECKPOINT
        manifest.close()  # waits for the copy back
        copy = tmp_path / "copy.db"
        shutil.copyfile(path, copy)  # the database file alone, without its WAL
        alone = sqlite3.connect(copy)
        try:
            assert alone.execute("SELECT n FROM notes ORDER BY n").fetchall() == [(1,), (2,), (3,)]
        finally:
            alone.close()
    finally:
        bystander.close()
        manifest.close()


def test_a_failed_big_write_leaves_the_writer_checkpointing(tmp_path: Path) -> None:
    manifest = Manifest.open(f"sqlite:///{tmp_path / 'manifest.db'}")
    try:
        with pytest.raises(RuntimeError, match="index build failed"), manifest.write(copy_back=False):
            raise RuntimeError("index build failed")
        with manifest.write() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == WAL_AUTOCHECKPOINT
    finally:
        manifest.close()


def _hold_the_write_lock(manifest: Manifest, holding: threading.Event, release: threading.Event) -> None:
    """Another writer: it changes document 0 and holds the write lock until `release`."""
    with manifest.write() as conn:
        conn.exec_driver_sql("UPDATE documents SET version = 2, lastmod = 'by the other' WHERE key = '0'")
        holding.set()
        release.wait(30)


def test_postgresql_writers_see_what_the_writer_before_committed_whatever_the_default_isolation() -> None:
    """A server whose default isolation is REPEATABLE READ would give a writer the snapshot of its first
    statement, the lock it then waits for: it would read what the writer before it changed as it was before.
    Writers run at READ COMMITTED, so an event applied right after another writer's commit builds on it."""
    settings = Settings(allowed_hosts=(HOST,))
    event = change(0, 3, day=9)
    for url in fresh_pg_database():
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            name = make_url(url).database
            conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'")
        engine.dispose()
        manifest = Manifest.open(url)
        try:
            rebuild_with(manifest, 10)
            applier = Applier(manifest, settings.rules, settings.limits)
            holding, release = threading.Event(), threading.Event()
            other = threading.Thread(target=_hold_the_write_lock, args=(manifest, holding, release))
            other.start()
            assert holding.wait(30)
            with ThreadPoolExecutor(1) as pool:
                applied = pool.submit(applier.apply_raw, [("test", orjson.dumps(event))])
                time.sleep(0.5)  # it has begun, and waits for the other writer's lock
                release.set()
                other.join(30)
                assert applied.result(30).applied == 1
            with manifest.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW transaction_isolation").scalar_one() == "repeatable read"
                row = conn.exec_driver_sql("SELECT version, lastmod FROM documents WHERE key = '0'").one()
            assert tuple(row) == (3, event["lastmod"])
        finally:
            manifest.close()
