"""Dead letters: refused input, kept with the reason it was refused. Never silently dropped."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, func, select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.records import DeadLetter
from sitemap_keeper.snapshot.manifest.schema import dead_letters


def add(conn: Connection, letters: Sequence[tuple[str, str, bytes]]) -> None:
    """Record refused input: (source, reason, raw bytes)."""
    if letters:
        now = time.time()
        conn.execute(dead_letters.insert(), [
            {"created_at": now, "source": s[:200], "reason": r, "raw": raw} for s, r, raw in letters
        ])


class DeadLetters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self, limit: int | None = None) -> list[DeadLetter]:
        query = select(dead_letters).order_by(dead_letters.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(dead_letters)).scalar_one())
