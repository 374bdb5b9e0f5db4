"""The manifest's named values (sitemaps_meta): the counter every change of a shard's content draws a new
revision from, the revision the last rebuild left every shard at, and the manifest's identity."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.schema import PACKED_REVISION, REVISION, SITE_ID, meta


def next_revision(conn: Connection) -> int:
    conn.execute(meta.update().where(meta.c.name == REVISION).values(value=meta.c.value + 1))
    return int(conn.execute(select(meta.c.value).where(meta.c.name == REVISION)).scalar_one())


def mark_rebuilt(conn: Connection, revision: int) -> None:
    """Every shard is at `revision` and holds exactly its packs' documents (in the rebuild's swap)."""
    conn.execute(meta.delete().where(meta.c.name == PACKED_REVISION))
    conn.execute(meta.insert().values(name=PACKED_REVISION, value=revision))


def site_id(db: Database, make: Callable[[], int]) -> int:
    """The manifest's identity: made by `make` once, by whoever asks first, and kept (a rebuild or a replay keeps
    it)."""
    query = select(meta.c.value).where(meta.c.name == SITE_ID)
    with db.engine.connect() as conn:
        value = conn.execute(query).scalar()
    if value is None:
        with db.write() as conn:  # serialised with every other writer: two first users make one id
            value = conn.execute(query).scalar()
            if value is None:
                value = make()
                conn.execute(meta.insert().values(name=SITE_ID, value=value))
    return int(value)
