"""What each generation changed, per section, recorded when it went live; made on first use."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.records import DiffRow
from sitemap_keeper.snapshot.manifest.schema import generation_diffs


class Diffs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, gen_id: str, rows: Iterable[DiffRow]) -> None:
        """Replace what is recorded for `gen_id`."""
        self.db.ensure(generation_diffs)
        values = [{"generation_id": gen_id, **r._asdict()} for r in rows]
        with self.db.write() as conn:
            conn.execute(generation_diffs.delete().where(generation_diffs.c.generation_id == gen_id))
            if values:
                conn.execute(generation_diffs.insert(), values)

    def recorded(self, gen_id: str) -> list[DiffRow]:
        """What is recorded for `gen_id`, by section; nothing when nothing is (a reader creates nothing)."""
        if not self.db.has(generation_diffs):
            return []
        t = generation_diffs.c
        with self.db.engine.connect() as conn:
            return [
                DiffRow(*r)
                for r in conn.execute(
                    select(t.section, t.base_id, t.added, t.removed, t.changed)
                    .where(t.generation_id == gen_id)
                    .order_by(t.section)
                )
            ]
