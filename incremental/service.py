"""`sitemaps run`: consume events, apply them exactly once, publish and prune on timers, answer probes.

The main thread owns the event source and the applier: poll a batch, apply it with its offsets in one
transaction, tell the source, repeat (reading the next batch ahead, for the workers to parse meanwhile).
Everything that fails outside that transaction (the broker, the database, a rebalance) leads back to the
offsets stored in the manifest, so no event is lost or applied twice, whenever the process stops. Timers run
on their own thread (incremental/scheduler.py); probes and metrics on another (incremental/health.py).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.apply import Prepared
from sitemap_keeper.incremental.health import make_health_server
from sitemap_keeper.incremental.leader import Leader, open_leader
from sitemap_keeper.incremental.logs import fields
from sitemap_keeper.incremental.metrics import Metrics
from sitemap_keeper.incremental.offsets import OffsetConflict, OffsetStore
from sitemap_keeper.incremental.scheduler import Timers
from sitemap_keeper.incremental.sources.base import EventBatch, EventSource
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.incremental.sources.kafka import KafkaConfig, KafkaSource
from sitemap_keeper.snapshot.manifest.errors import RebuildRunning
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.pages import Pages

log = logging.getLogger(__name__)

POLL_TIMEOUT = 1.0  # seconds a poll may wait for events: also how fast a stop request is noticed
CHECK_EVERY = 5.0  # seconds between source health checks (lag, reachability)
LIVENESS = 300.0  # the main loop is considered stuck after this long without a turn
MAX_BACKOFF = 30.0
REBUILD_CHECK = 1.0  # seconds between looks at a running rebuild, while events wait for it
# Events per transaction at most. On SQLite a batch costs about the pages it touches, and a bigger batch touches
# fewer per event (docs/performance.md); it is also what is applied again after a crash.
BATCH_SIZE = 20_000


class Service:
    def __init__(
        self,
        app: App,
        source: EventSource,
        offsets: OffsetStore,
        leader: Leader | None = None,
        batch_size: int = BATCH_SIZE,
        metrics: Metrics | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.app = app
        self.source = source
        self.offsets = offsets
        self.leader = leader or Leader()
        self.batch_size = batch_size
        self.metrics = metrics or Metrics()
        self.timers = Timers(app, self.metrics, self.leader, offsets)
        self.stopping = stopping or threading.Event()
        self.beat = time.monotonic()
        self.checked = 0.0
        self.db_status = (True, "ok")
        self.backoff = 1.0
        self.letters_seen = 0  # dead_letters ids up to this one are not ours to forward
        self.total = Counts()  # what this run applied
        self.ahead: tuple[EventBatch, Prepared] | None = None  # the next batch, read while this one is applied
        self.paused = False  # a batch was refused for a running rebuild: events wait in the source until it ends

    # -- probes ---------------------------------------------------------------------------------------------

    def alive(self) -> tuple[bool, str]:
        age = time.monotonic() - self.beat
        return age < LIVENESS, f"main loop turned {age:.1f}s ago"

    def ready(self) -> tuple[bool, str]:
        return self.db_status if not self.db_status[0] else self.source.status

    def process_state(self) -> dict[str, object]:
        """What this process knows beyond the manifest, for the status page (read from the server's thread)."""
        ready, why = self.ready()
        return {
            "ready": ready,
            "readiness": why,
            "lag": self.source.lag,
            "leader": self.leader.is_leader(),
            "paused_for_rebuild": self.paused,
            "since_main_loop_turned_seconds": time.monotonic() - self.beat,
            "applied_this_run": self.total.applied,
            "stale_this_run": self.total.stale,
            "rejected_this_run": self.total.rejected,
        }

    # -- the loop -------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(
        self,
        port: int | None = None,
        on_listen: Callable[[int], None] | None = None,
        until: Callable[[], bool] | None = None,
    ) -> Counts:
        """Consume until stop() (SIGTERM) or until `until()` is true; returns what was applied."""
        settings = self.app.settings
        self.app.publisher  # noqa: B018 - built here, not raced for by the timer thread
        pages = Pages(self.app.manifest, self.app.store, self.app.router, settings.base_url, self.process_state)
        server = make_health_server(
            settings.http_host,
            settings.http_port if port is None else port,
            self.alive,
            self.ready,
            self.metrics.registry,
            pages,
        )
        if on_listen is not None:
            on_listen(server.server_port)
        if self.source.dead_letter_topic:
            self.letters_seen = self._last_letter()
        self.leader.start()
        self.timers.start()
        try:
            while not self.stopping.is_set() and not (until is not None and until()):
                self.beat = time.monotonic()
                self._turn()
        finally:
            log.info("stopping: %s", self.total)
            self._drop_ahead()  # never applied: the next run reads it again from the stored offsets
            self.source.close()
            self.timers.shutdown()
            self.leader.stop()
            server.shutdown()
            server.server_close()
        return self.total

    def _turn(self) -> None:
        try:
            if time.monotonic() - self.checked >= CHECK_EVERY:
                self._check()
            if self.paused and self._still_paused():
                self.source.idle()
                self.stopping.wait(REBUILD_CHECK)
                return
            current, self.ahead = self.ahead or self._poll(POLL_TIMEOUT), None
            if current is not None:
                # Read the next batch now if it is there (no waiting): the workers parse it while this one is
                # applied. It starts where this one ends, so it is applied only if this one commits.
                self.ahead = self._poll(0)
                self.total.add(self.apply(*current))
            self.db_status, self.backoff = (True, "ok"), 1.0
        except SQLAlchemyError as exc:
            self.db_status = (False, f"manifest unavailable: {exc.__class__.__name__}")
            log.warning("manifest unavailable (%s); retrying in %.0fs", exc, self.backoff)
            self._rewind()
            self.stopping.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _pause(self) -> None:
        """A rebuild's swap would drop what is applied while it runs: events wait in the source until then."""
        self.paused = True
        self.metrics.paused.set(1)
        log.info("a rebuild is running: events wait until it has swapped its tables in")
        self._rewind()  # the refused batch and the one read ahead are read again afterwards

    def _still_paused(self) -> bool:
        if self.app.manifest.locks.rebuild_running():
            return True
        self.paused = False
        self.metrics.paused.set(0)
        log.info("the rebuild is over: applying events again")
        return False

    def _check(self) -> None:
        self.checked = time.monotonic()
        self.source.check()
        self.metrics.set_lag(self.source.lag)
        self.metrics.unaccounted.set(self.source.unaccounted)
        self.metrics.ready.set(1 if self.ready()[0] else 0)

    def _poll(self, timeout: float) -> tuple[EventBatch, Prepared] | None:
        batch = self.source.poll(self.batch_size, timeout)
        if batch is None:
            return None
        return batch, self.app.applier.prepare([raw for _source, raw in batch.items])

    def _rewind(self) -> None:
        """Back to the offsets stored in the manifest; a batch read ahead is read again from there."""
        self._drop_ahead()
        self.source.rewind()

    def _drop_ahead(self) -> None:
        if self.ahead is not None:
            self.ahead[1].discard()
            self.ahead = None

    def apply(self, batch: EventBatch, prepared: Prepared | None = None) -> Counts:
        """Apply one batch with its end offsets, in one transaction; fenced against a rebalance."""
        try:
            write_offsets = self.offsets.writer(batch.start, batch.end)
            counts = self.app.applier.apply_raw(batch.items, extra=write_offsets, prepared=prepared)
        except OffsetConflict as exc:
            log.warning("batch dropped: %s; going back to the stored offsets", exc)
            self.metrics.conflicts.inc()
            self._rewind()
            return Counts()
        except RebuildRunning:  # the next turns wait for it, looking every REBUILD_CHECK seconds
            self._pause()
            return Counts()
        self.source.committed(batch)
        self.metrics.counted(counts)
        self.metrics.set_lag(self.source.lag)
        log.debug(
            "applied a batch: %s", counts, extra={"event": "applied", "events": len(batch.items), **fields(counts)}
        )
        if counts.rejected and self.source.dead_letter_topic:
            self._forward_letters(batch)
        return counts

    def _last_letter(self) -> int:
        return self.app.manifest.dead_letters.newest_id()

    def _forward_letters(self, batch: EventBatch) -> None:
        """The batch's dead letters (just committed, so the newest rows) also go to the dead-letter topic."""
        rows = self.app.manifest.dead_letters.after(self.letters_seen)
        if rows:
            self.letters_seen = rows[-1].id
        ours = [(d.source, d.reason, bytes(d.raw), batch.keys.get(d.source)) for d in rows if d.source in batch.keys]
        self.source.dead_letter(ours)


def tune_gc() -> None:
    """For a process that applies events: each batch allocates millions of short-lived objects, and the
    default threshold (700) runs the collector every few events over every long-lived object. So what startup
    built is frozen and the collector runs less often (its effect: docs/performance.md, bench/bench_apply.py).
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def open_service(
    app: App, follow: Path | None = None, batch_size: int = BATCH_SIZE, stopping: threading.Event | None = None
) -> Service:
    """The service as configured: Kafka from the settings, or a followed file."""
    offsets = OffsetStore(app.manifest)
    source: EventSource
    if follow is not None:
        source = FileFollower(follow, offsets)
    else:
        source = KafkaSource(KafkaConfig.from_settings(app.settings), offsets, max_records=batch_size)
    return Service(app, source, offsets, open_leader(app.settings), batch_size, stopping=stopping)
