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
        conn.execute(
            dead_letters.insert(),
            [{"created_at": now, "source": s[:200], "reason": r, "raw": raw} for s, r, raw in letters],
        )


def add_each(conn: Connection, letters: Sequence[tuple[str, str, bytes] | None]) -> list[int | None]:
    """Record refused input (source, reason, raw) one at a time, for their ids (None in, None out)."""
    ids: list[int | None] = []
    now = time.time()
    for letter in letters:
        if letter is None:
            ids.append(None)
            continue
        source, reason, raw = letter
        ids.append(
            conn.execute(
                dead_letters.insert()
                .returning(dead_letters.c.id)
                .values(created_at=now, source=source[:200], reason=reason, raw=raw)
            ).scalar_one()
        )
    return ids


def withdraw(conn: Connection, ids: Sequence[int], chunk: int = 500) -> None:
    """Delete these dead letters (what they stood for was applied after all)."""
    for i in range(0, len(ids), chunk):
        conn.execute(dead_letters.delete().where(dead_letters.c.id.in_(ids[i : i + chunk])))


class DeadLetters:
    def __init__(self, db: Database) -> None:
        self.db = db

    add = staticmethod(add)  # inside the caller's transaction

    def all(self, limit: int | None = None) -> list[DeadLetter]:
        query = select(dead_letters).order_by(dead_letters.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(dead_letters)).scalar_one())

    def newest_id(self) -> int:
        """The id of the newest dead letter; 0 when there is none."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(dead_letters.c.id), 0))).scalar_one())

    def after(self, letter_id: int) -> list[DeadLetter]:
        """The dead letters newer than `letter_id`, oldest first."""
        query = select(dead_letters).where(dead_letters.c.id > letter_id).order_by(dead_letters.c.id)
        with self.db.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]

    def newest(self, limit: int) -> list[DeadLetter]:
        """The `limit` newest dead letters, newest first."""
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        with self.db.engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(query)]
