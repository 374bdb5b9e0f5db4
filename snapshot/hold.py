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

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import HoldRow


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
    row = manifest.holds.current(conn)
    return Hold(*row) if row else None


def put(manifest: Manifest, hold: Hold | None) -> None:
    """Set `hold` (replacing any), or release the hold with None."""
    manifest.holds.put(HoldRow(hold.generation_id, hold.since, hold.by, hold.reason) if hold else None)


def release(manifest: Manifest) -> Hold | None:
    """Release the hold; returns the one released (None: there was none)."""
    was = current(manifest)
    if was is not None:
        put(manifest, None)
    return was
