"""Consumed positions, stored in the manifest in the same transaction as the events they cover.

This is the exactly-once mechanism: a batch's effect and the position after it commit together or not at all,
so a restart, a crash or a rebalance resumes exactly after the last applied event. Kafka partitions and
followed files alike are (topic, partition) -> next offset; a followed file is topic `file:<path>`,
partition 0, and its offset is a byte offset.

Writes are fenced: a batch commits only if the stored offsets are still those its consumer started from, so
two consumers that briefly both believe they own a partition (a rebalance while one was mid-batch) can never
both apply the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Connection

from sitemap_keeper.snapshot.manifest import Manifest

Position = tuple[str, int]  # (topic, partition)
REPLAY_PREFIX = "replay:"  # rows `replay:<topic>` hold a replay's end offsets: publishing waits for them


class OffsetConflict(RuntimeError):
    """Another consumer moved a partition on since this one read its offset: the batch must not commit."""


class OffsetStore:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.rows = manifest.offsets
        self.rows.ensure()

    def load(self, topic: str, conn: Connection | None = None) -> dict[int, int]:
        """partition -> next offset, as committed."""
        return self.rows.of(topic, conn)

    def writer(self, start: Mapping[Position, int | None], end: Mapping[Position, int]) -> Callable[[Connection], None]:
        """For `Applier.apply_raw(extra=...)`: check `start` is still what is stored, then store `end`."""

        def write(conn: Connection) -> None:
            for topic in {t for t, _p in start}:
                stored = self.load(topic, conn)
                for (t, p), expected in start.items():
                    if t == topic and stored.get(p) != expected:
                        raise OffsetConflict(f"{t}[{p}] is at {stored.get(p)}, this batch started at {expected}")
            self.store(conn, end)

        return write

    def store(self, conn: Connection, positions: Mapping[Position, int]) -> None:
        self.rows.store(conn, positions)

    def reset(self, conn: Connection, topic: str, start: Mapping[int, int], replay_end: Mapping[int, int]) -> None:
        """Forget `topic`'s offsets, start over at `start`, and hold publishing until `replay_end`."""
        self.rows.forget(conn, [topic, REPLAY_PREFIX + topic])
        self.store(conn, {(topic, p): o for p, o in start.items()})
        targets = {(REPLAY_PREFIX + topic, p): o for p, o in replay_end.items() if o > start.get(p, 0)}
        self.store(conn, targets)

    def replay_pending(self) -> bool:
        """True while a replay has not reached the end offsets it started for; the targets go once reached."""
        rows = self.rows.all()
        targets = {(t, p): o for (t, p), o in rows.items() if t.startswith(REPLAY_PREFIX)}
        if not targets:
            return False
        if any(rows.get((t[len(REPLAY_PREFIX) :], p), 0) < o for (t, p), o in targets.items()):
            return True
        with self.manifest.write() as conn:
            self.rows.forget(conn, {t for t, _p in targets})
        return False
