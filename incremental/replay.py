"""`sitemaps replay`: rebuild the manifest from the change feed, publish it whole, and go on from there.

The replay reads every partition from the beginning (or from a point in time) up to the end offsets it found
at the start, then publishes a full generation. It is the ordinary apply path with offsets stored in each
batch's transaction, so a replay that stops half-way resumes where it stopped, and the end offsets are
stored too: no publish (by the replay or any `sitemaps run`) happens before they are reached, so a half
replayed manifest is never published. The live generation is served, unchanged, until then.

Only a compacted topic keyed by document holds every document's latest event for ever; on a topic with
time- or size-based retention a replay rebuilds only what the topic still holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.offsets import OffsetStore, Position
from sitemap_keeper.incremental.service import BATCH_SIZE, Service
from sitemap_keeper.incremental.sources.kafka import KafkaConfig, KafkaSource
from sitemap_keeper.snapshot.manifest.errors import RebuildRunning
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.publish import PublishResult
from sitemap_keeper.snapshot.refusals import Held

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The topic cannot be replayed as asked."""


@dataclass(frozen=True)
class Span:
    start: dict[Position, int]  # (topic, partition) -> first offset to apply
    end: dict[Position, int]  # (topic, partition) -> end offset when the replay began

    def of(self, topic: str) -> tuple[dict[int, int], dict[int, int]]:
        """One topic's start and end offsets, by partition."""
        return (
            {p: o for (t, p), o in self.start.items() if t == topic},
            {p: o for (t, p), o in self.end.items() if t == topic},
        )


def parse_since(value: str) -> float:
    """Seconds since the epoch, from an ISO 8601 time (UTC unless it says otherwise) or a number."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ReplayError(f"--since must be an ISO 8601 time or epoch seconds, got {value!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def span(config: KafkaConfig, since: float | None) -> Span:
    """What to replay: from the beginning (or the first event at `since`) to the end offsets right now."""
    consumer = KafkaConsumer(**config.consumer(group=False, max_records=1))
    try:
        parts = config.partitions(consumer)
        if not parts:
            raise ReplayError(f"topic {config.names} does not exist at {config.bootstrap_servers}")
        end = consumer.end_offsets(parts)
        if since is None:
            start = consumer.beginning_offsets(parts)
        else:
            found = consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
            start = {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in parts}
    finally:
        consumer.close()
    return Span(
        {(tp.topic, tp.partition): start[tp] for tp in parts}, {(tp.topic, tp.partition): end[tp] for tp in parts}
    )


class Replay:
    def __init__(self, app: App, batch_size: int = BATCH_SIZE, stopping: threading.Event | None = None) -> None:
        self.app = app
        self.config = KafkaConfig.from_settings(app.settings)
        self.offsets = OffsetStore(app.manifest)
        self.batch_size = batch_size
        self.stopping = stopping or threading.Event()
        self.on_progress: Callable[[int, int], None] | None = None  # told (events applied, events to replay)

    def reset(self, sp: Span, keep_manifest: bool) -> None:
        """Empty the manifest (unless kept), store the replay's start and end offsets: one transaction.

        Refused while a rebuild loads: its swap would bring back what this empties, under the replay's offsets.
        """
        with self.app.manifest.write() as conn:
            if self.app.manifest.locks.rebuild_running(conn):
                raise RebuildRunning("a rebuild is running on this manifest: replay once it has swapped its tables in")
            if not keep_manifest:
                self.app.manifest.empty(conn)
            for topic in sorted({t for t, _p in sp.end}):
                self.offsets.reset(conn, topic, *sp.of(topic))

    def catch_up(self, sp: Span, on_listen: Callable[[int], None] | None = None) -> Counts:
        """Apply every partition up to the span's end (the service loop, reading all partitions itself)."""
        source = KafkaSource(self.config, self.offsets, group=False, max_records=self.batch_size)
        service = Service(self.app, source, self.offsets, Leader(), self.batch_size, stopping=self.stopping)
        spans = {pos: (sp.start[pos], end) for pos, end in sp.end.items()}
        total = sum(end - start for start, end in spans.values())

        def done() -> bool:
            if self.on_progress is not None:
                self.on_progress(
                    sum(
                        min(end, max(start, source.expected.get(pos) or 0)) - start
                        for pos, (start, end) in spans.items()
                    ),
                    total,
                )
            return all((source.expected.get(pos) or 0) >= end for pos, end in sp.end.items())

        return service.run(on_listen=on_listen, until=done)

    def run(
        self, since: float | None, keep_manifest: bool, on_listen: Callable[[int], None] | None = None
    ) -> tuple[Counts, PublishResult | None]:
        """Replay and publish in full; (counts, None) when stopped before the end."""
        sp = span(self.config, since)
        log.info("replaying %s: partitions from %s to %s", self.config.names, sp.start, sp.end)
        self.reset(sp, keep_manifest)
        counts = self.catch_up(sp, on_listen)
        if self.stopping.is_set():
            return counts, None
        self.offsets.replay_pending()  # caught up: this clears the end offsets, publishing may go on
        try:
            return counts, self.app.publisher.publish(full=True)
        except Held as exc:  # the manifest is replayed; the operator decides when it goes live
            return counts, PublishResult(None, None, message=str(exc))
