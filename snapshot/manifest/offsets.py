"""Consumed positions of the event sources: (topic, partition) -> next offset (incremental/offsets.py keeps the
rules: fencing, replay targets)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, delete, select

from sitemap_keeper.snapshot.manifest.bulk import BulkLoader
from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.schema import offsets


class Offsets:
    def __init__(self, db: Database, bulk: BulkLoader) -> None:
        self.db = db
        self.bulk = bulk

    def ensure(self) -> None:
        self.db.ensure(offsets)

    def of(self, topic: str, conn: Connection | None = None) -> dict[int, int]:
        """partition -> next offset of `topic`, as committed (in `conn`'s transaction, or a read of its own)."""
        query = select(offsets.c.partition_no, offsets.c.next_offset).where(offsets.c.topic == topic)
        if conn is not None:
            return {int(p): int(o) for p, o in conn.execute(query)}
        with self.db.read() as c:
            return {int(p): int(o) for p, o in c.execute(query)}

    def all(self) -> dict[tuple[str, int], int]:
        """Every stored position."""
        with self.db.read() as conn:
            return {
                (t, p): o
                for t, p, o in conn.execute(select(offsets.c.topic, offsets.c.partition_no, offsets.c.next_offset))
            }

    def store(self, conn: Connection, positions: Mapping[tuple[str, int], int]) -> None:
        now = time.time()
        self.bulk.upsert(conn, offsets, ("topic", "partition_no"), [(t, p, o, now) for (t, p), o in positions.items()])

    def forget(self, conn: Connection, topics: Iterable[str]) -> None:
        """Drop every position of these topics."""
        conn.execute(delete(offsets).where(offsets.c.topic.in_(sorted(set(topics)))))
