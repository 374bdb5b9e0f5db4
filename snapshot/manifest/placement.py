"""Sections and shards as documents are placed: each section's open shard (where new documents go), and each
shard's URL and byte counts and revision."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, select, tuple_

from sitemap_keeper.snapshot.manifest.bulk import BulkLoader
from sitemap_keeper.snapshot.manifest.schema import sections, shards

SHARDS_PER_QUERY = 400  # shards per IN (...) query: well below every database's parameter limit


class Placement:
    def __init__(self, bulk: BulkLoader) -> None:
        self.bulk = bulk

    @staticmethod
    def open_shards(conn: Connection, names: Iterable[str]) -> dict[str, int]:
        """section -> its open shard, of these sections (those the manifest has)."""
        query = select(sections.c.name, sections.c.open_shard).where(sections.c.name.in_(list(names)))
        return {name: int(n) for name, n in conn.execute(query)}

    @staticmethod
    def shard_counts(conn: Connection, wanted: Iterable[tuple[str, int]]) -> Iterator[tuple[str, int, int, int]]:
        """(section, shard_no, url_count, byte_count) of these shards (those the manifest has)."""
        todo = sorted(wanted)
        key = tuple_(shards.c.section, shards.c.shard_no)
        for i in range(0, len(todo), SHARDS_PER_QUERY):
            query = select(shards.c.section, shards.c.shard_no, shards.c.url_count, shards.c.byte_count).where(
                key.in_(todo[i : i + SHARDS_PER_QUERY])
            )
            yield from ((s, n, urls, size) for s, n, urls, size in conn.execute(query))

    def write(
        self, conn: Connection, shard_rows: list[tuple[str, int, int, int, int]], open_shards: list[tuple[str, int]]
    ) -> None:
        """Store shards (section, shard_no, url_count, byte_count, revision) and sections' open shards."""
        self.bulk.upsert(conn, shards, ("section", "shard_no"), shard_rows)
        self.bulk.upsert(conn, sections, ("name",), open_shards)
