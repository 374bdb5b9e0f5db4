"""The site's content as a whole: every document, shard, section and shard pack."""

from __future__ import annotations

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest.schema import documents, sections, shard_packs, shards


def empty(conn: Connection) -> None:
    """Delete every document, shard, section and shard pack (a replay starts over from its topic)."""
    for table in (documents, shards, sections, shard_packs):
        conn.execute(table.delete())
