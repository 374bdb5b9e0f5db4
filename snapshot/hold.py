"""Holds: an operator keeps the live generation where it is, and publishes switch nothing until released.

A rollback sets one (the upstream trouble that made the operator roll back is usually still there: the next
publish would put the rolled-back content live again); `sitemaps hold` sets one at the live generation, and
`sitemaps resume` releases it. While held, events are still applied and shards still become dirty: only the
router is left alone, by every publish (the CLI's, the service's timer, a rebuild's or a replay's).

The hold is one row of its own table in the manifest, so it survives restarts, is seen by every replica and
works with every router. A reader (`status`, the timer's metrics) never creates that table: no table, no hold.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Float, Integer, MetaData, String, Table, Text, select

from sitemap_keeper.snapshot.manifest import Manifest

metadata = MetaData()
holds = Table(
    "sitemaps_hold", metadata,
    Column("id", Integer, primary_key=True),  # always HOLD_ID: at most one hold
    Column("generation_id", String(40)),  # live when the hold was set (the rollback's target)
    Column("held_since", Float, nullable=False),
    Column("held_by", String(200), nullable=False),
    Column("reason", Text),
)
HOLD_ID = 1


@dataclass(frozen=True, slots=True)
class Hold:
    generation_id: str | None
    since: float
    by: str
    reason: str | None

    def describe(self) -> str:
        """One line: where, since when, by whom and why."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        at = f" at generation {self.generation_id}" if self.generation_id else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"held{at} since {when} by {self.by}{why}"

    def as_json(self) -> dict[str, object]:
        return {"generation": self.generation_id, "since": self.since, "by": self.by, "reason": self.reason}


def operator() -> str:
    """Who is holding, when not told: the OS user and the host (a pod's user may have no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def current(manifest: Manifest, conn: Connection | None = None) -> Hold | None:
    """The hold in force, if any. Reads only: a manifest without the table has no hold."""
    if not manifest.has_tables(metadata, conn):
        return None
    h = holds.c
    query = select(h.generation_id, h.held_since, h.held_by, h.reason).where(h.id == HOLD_ID)
    if conn is not None:
        row = conn.execute(query).first()
    else:
        with manifest.engine.connect() as c:
            row = c.execute(query).first()
    return Hold(row.generation_id, row.held_since, row.held_by, row.reason) if row else None


def put(manifest: Manifest, hold: Hold | None) -> None:
    """Set `hold` (replacing any), or release the hold with None."""
    manifest.ensure_tables(metadata)
    with manifest.write() as conn:
        conn.execute(holds.delete())
        if hold is not None:
            conn.execute(holds.insert().values(id=HOLD_ID, generation_id=hold.generation_id, held_since=hold.since,
                                               held_by=hold.by[:200], reason=hold.reason))


def release(manifest: Manifest) -> Hold | None:
    """Release the hold; returns the one released (None: there was none)."""
    was = current(manifest)
    if was is not None:
        put(manifest, None)
    return was
