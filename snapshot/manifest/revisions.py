"""Shard revisions: the counter every change of a shard's content draws a new revision from, and the revision
the last rebuild left every shard at."""

from __future__ import annotations

from sqlalchemy import Connection, select

from sitemap_keeper.snapshot.manifest.schema import PACKED_REVISION, REVISION, meta


def next_revision(conn: Connection) -> int:
    conn.execute(meta.update().where(meta.c.name == REVISION).values(value=meta.c.value + 1))
    return int(conn.execute(select(meta.c.value).where(meta.c.name == REVISION)).scalar_one())


def mark_rebuilt(conn: Connection, revision: int) -> None:
    """Every shard is at `revision` and holds exactly its packs' documents (in the rebuild's swap)."""
    conn.execute(meta.delete().where(meta.c.name == PACKED_REVISION))
    conn.execute(meta.insert().values(name=PACKED_REVISION, value=revision))
