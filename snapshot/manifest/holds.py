"""The operator's hold: at most one row, made on first use."""

from __future__ import annotations

from sqlalchemy import Connection, select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.records import HoldRow
from sitemap_keeper.snapshot.manifest.schema import HOLD_ID, holds


class Holds:
    def __init__(self, db: Database) -> None:
        self.db = db

    def current(self, conn: Connection | None = None) -> HoldRow | None:
        """The hold in force, if any. Reads only: a manifest without the table has no hold."""
        if not self.db.has(holds, conn):
            return None
        h = holds.c
        query = select(h.generation_id, h.held_since, h.held_by, h.reason).where(h.id == HOLD_ID)
        with self.db.connection(conn) as c:
            row = c.execute(query).first()
        return HoldRow(row.generation_id, row.held_since, row.held_by, row.reason) if row else None

    def put(self, hold: HoldRow | None) -> None:
        """Set `hold` (replacing any), or release the hold with None."""
        self.db.ensure(holds)
        with self.db.write() as conn:
            conn.execute(holds.delete())
            if hold is not None:
                conn.execute(
                    holds.insert().values(
                        id=HOLD_ID,
                        generation_id=hold.generation_id,
                        held_since=hold.since,
                        held_by=hold.by[:200],
                        reason=hold.reason,
                    )
                )
