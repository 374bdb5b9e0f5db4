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

import pytest
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.exc import OperationalError

from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.connection import connect
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.settings import Settings
from tests.service_helpers import HOST
from tests.service_helpers import event as change


def rebuild(manifest: Manifest) -> None:
    settings = Settings(allowed_hosts=(HOST,))
    docs = [{k: v for k, v in change(i, 1).items() if k != "op"} for i in range(3)]
    Rebuilder(manifest, settings.rules, settings.limits, workers=1).rebuild(row_chunks("test", docs))


# what creates tables, the statement to commit from another connection before, the table there afterwards
CASES: dict[str, tuple[Callable[[Manifest], Any], str, str]] = {
    "manifest": (lambda m: m.create(), "CREATE TABLE ", "documents"),
    "offsets": (OffsetStore, "CREATE TABLE sitemaps_offsets", "sitemaps_offsets"),
    "rebuild staging": (rebuild, "CREATE TABLE documents_staging", "documents"),
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
