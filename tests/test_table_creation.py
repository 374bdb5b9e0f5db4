"""Tables are created in a write transaction, so a replica or a rebuild committing meanwhile makes the creator
wait for the lock instead of failing.

In a deferred SQLite transaction the creator first reads the schema, then writes: if another connection commits
in between, SQLite refuses the write at once with "database is locked" (no busy wait). `sitemaps run` failed
at startup that way once, creating its offsets table while another process wrote to the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.exc import OperationalError

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.snapshot.manifest import Manifest, document_rows
from sitemap_keeper.snapshot.manifest.connection import connect
from sitemap_keeper.snapshot.manifest.document_rows import Ident, Stored
from sitemap_keeper.snapshot.manifest.errors import ManifestDamaged
from sitemap_keeper.snapshot.manifest.schema import DOCUMENTS_FILLFACTOR
from sitemap_keeper.snapshot.settings import Settings
from tests.conftest import fresh_pg_database
from tests.service_helpers import HOST, rebuild_with
from tests.service_helpers import event as change

# what creates tables, the statement to commit from another connection before, the table there afterwards
CASES: dict[str, tuple[Callable[[Manifest], Any], str, str]] = {
    "manifest": (lambda m: m.create(), "CREATE TABLE ", "documents"),
    "offsets": (OffsetStore, "CREATE TABLE sitemaps_offsets", "sitemaps_offsets"),
    "rebuild staging": (lambda m: rebuild_with(m, 3), "CREATE TABLE documents_staging", "documents"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_commit_by_another_connection_meanwhile_does_not_fail_the_creation(tmp_path: Path, case: str) -> None:
    create, prefix, table = CASES[case]
    url = f"sqlite:///{tmp_path / 'manifest.db'}"
    manifest = Manifest(connect(url))
    if case != "manifest":
        manifest.create()
    other = create_engine(url, connect_args={"timeout": 0.2})  # a replica, say; it gives up on a lock quickly
    with other.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS replica_notes (n INTEGER)")
    tries: list[str] = []

    @event.listens_for(manifest.writer, "before_cursor_execute")
    def commit_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(prefix) and not tries:
            try:
                with other.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO replica_notes VALUES (1)")
                tries.append("committed")
            except OperationalError:
                tries.append("waited for the creator's lock")

    try:
        create(manifest)
        assert tries == ["waited for the creator's lock"]
        assert table in inspect(manifest.engine).get_table_names()
        with other.begin() as conn:  # and the replica writes once the creator is done
            conn.exec_driver_sql("INSERT INTO replica_notes VALUES (2)")
    finally:
        other.dispose()
        manifest.close()


def _page_of(manifest: Manifest, key: str) -> int:
    """The heap page a document's current row version is on (PostgreSQL)."""
    with manifest.engine.connect() as conn:
        ctid = conn.exec_driver_sql("SELECT ctid::text FROM documents WHERE key = %s", (key,)).scalar_one()
    return int(ctid.strip("()").split(",")[0])


def _fillfactor(manifest: Manifest) -> list[str] | None:
    with manifest.engine.connect() as conn:
        options: list[str] | None = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'documents'"
        ).scalar_one()
    return options


def test_postgresql_documents_pages_leave_room_for_an_event_s_row_in_place() -> None:
    """A rebuild fills the documents' pages to DOCUMENTS_FILLFACTOR, so an event's new row version stays in its
    page (a HOT update: no index entry written). A manifest made before (pages filled whole) applies events as
    ever, and gets the fill factor at its next rebuild."""
    settings = Settings(allowed_hosts=(HOST,))
    for url in fresh_pg_database():
        manifest = Manifest.open(url)
        try:
            with manifest.write() as conn:  # as the previous version made the table
                conn.exec_driver_sql("ALTER TABLE documents RESET (fillfactor)")
            manifest.create()  # opened again: it works as it is
            assert _fillfactor(manifest) is None
            applier = Applier(manifest, settings.rules, settings.limits)
            assert applier.apply_raw([("test", orjson.dumps(change(1, 2)))]).applied == 1
            rebuild_with(manifest, 600)
            assert _fillfactor(manifest) == [f"fillfactor={DOCUMENTS_FILLFACTOR}"]
            pages = {key: _page_of(manifest, key) for key in ("0", "1", "2")}
            counts = applier.apply_raw([("test", orjson.dumps(change(int(key), 3))) for key in pages])
            assert counts.applied == 3
            assert {key: _page_of(manifest, key) for key in pages} == pages
        finally:
            manifest.close()


def _applied(manifest: Manifest) -> set[tuple[str, int, str]]:
    with manifest.engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT key, version, lastmod FROM documents WHERE version > 1"))


def _then_by_hand(url: str, load_all: Callable[..., dict[Ident, Stored]]) -> Callable[..., dict[Ident, Stored]]:
    """`load_all`, then a change to document 0 by another connection that takes no write lock."""

    def load_then_change(*args: Any) -> dict[Ident, Stored]:
        found = load_all(*args)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE documents SET lastmod = 'by hand' WHERE key = '0'")
        engine.dispose()
        return found

    return load_then_change


@pytest.mark.parametrize("updates", [150, 3], ids=["through COPY", "one by one"])
def test_postgresql_apply_writes_a_stored_row_where_its_read_found_it(
    updates: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event's stored row is written back at the ctid its read found (a TID scan), not looked up in the
    (section, key) index again as an upsert does; 100 stored rows or more go through COPY and one UPDATE, fewer
    one by one. A row that something changed meanwhile, outside the write lock, is no longer there: the batch
    fails whole, naming the problem, rather than write over that change or lose its own."""
    settings = Settings(allowed_hosts=(HOST,))
    for url in fresh_pg_database():
        manifest = Manifest.open(url)
        try:
            rebuild_with(manifest, 600)
            applier = Applier(manifest, settings.rules, settings.limits)
            applier.parallel_min = 2 * updates  # parsed here, in one chunk
            events = [change(i, 2, day=9) for i in range(0, 2 * updates, 2)]
            assert applier.apply_raw([("test", orjson.dumps(ev)) for ev in events]).applied == updates
            assert _applied(manifest) == {(ev["key"], 2, ev["lastmod"]) for ev in events}

            monkeypatch.setattr(document_rows, "load_all", _then_by_hand(url, document_rows.load_all))
            again = [("test", orjson.dumps(change(i, 3, day=10))) for i in range(0, 2 * updates, 2)]
            with pytest.raises(ManifestDamaged, match=f"^1 of the {updates} documents rows this batch read were "):
                applier.apply_raw(again)
            assert _applied(manifest) == {
                (ev["key"], 2, "by hand" if ev["key"] == "0" else ev["lastmod"]) for ev in events
            }
        finally:
            manifest.close()
