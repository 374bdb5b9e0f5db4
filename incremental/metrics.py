"""Prometheus metrics of the service, in a registry of its own (several services can live in one process)."""

from __future__ import annotations

import importlib
import importlib.metadata
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sitemap_keeper import DISTRIBUTION
from sitemap_keeper.snapshot import calls
from sitemap_keeper.snapshot.hold import Hold
from sitemap_keeper.snapshot.manifest.records import Counts


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(
            "sitemaps_events",
            "Events consumed, by result: applied, stale (an older "
            "version than the manifest's: ignored) or rejected (dead-lettered)",
            ["result"],
            registry=r,
        )
        self.batches = Counter("sitemaps_batches", "Batches committed to the manifest", registry=r)
        self.conflicts = Counter(
            "sitemaps_offset_conflicts",
            "Batches rolled back because another consumer had moved their partitions on (a rebalance)",
            registry=r,
        )
        self.lag: int | None = None  # sitemaps_consumer_lag (Situational below); None: not known
        self.unaccounted = Gauge(
            "sitemaps_source_unaccounted",
            "Times this run found events it could not "
            "account for (a followed file rotated or truncated before it was read to its "
            "end); the log says what",
            registry=r,
        )
        self.dirty = Gauge("sitemaps_dirty_shards", "Shards whose content differs from the live generation", registry=r)
        self.publish_seconds = Histogram(
            "sitemaps_publish_duration_seconds",
            "Duration of publishes",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.publishes = Counter(
            "sitemaps_publishes",
            "Publish attempts by result: published, nothing "
            "(no dirty shard), skipped (another replica publishes), failed, held (an "
            "operator holds the site)",
            ["result"],
            registry=r,
        )
        self.prunes = Counter("sitemaps_prunes", "Prune runs by result", ["result"], registry=r)
        self.live = Gauge(
            "sitemaps_live_generation", "The live generation (as a label); value 1", ["generation"], registry=r
        )
        self.published_at = 0.0
        Situational(self).register(r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("sitemaps_build", "The running version, and whether the C fast path is loaded", registry=r).info(
            build_info()
        )
        self.ready = Gauge("sitemaps_ready", "1 when events can flow (source reachable, manifest writable)", registry=r)
        self.leader = Gauge("sitemaps_leader", "1 while this replica may publish and prune", registry=r)
        self.paused = Gauge(
            "sitemaps_paused_for_rebuild", "1 while events wait for a running rebuild's swap", registry=r
        )
        for result in ("applied", "stale", "rejected"):
            self.events.labels(result)  # show zeros from the start
        self.hold = Gauge(
            "sitemaps_hold_since_seconds",
            "When an operator held the site (Unix time; absent: not "
            "held): publishes switch nothing until `sitemaps resume`. Labels: who, and the generation",
            ["by", "generation"],
            registry=r,
        )
        self.set_hold(None)
        for result in ("published", "nothing", "skipped", "failed", "held"):
            self.publishes.labels(result)
        for result in ("pruned", "skipped", "failed"):
            self.prunes.labels(result)  # a first failure must be an increase, for the alert to see it

    def counted(self, counts: Counts) -> None:
        self.events.labels("applied").inc(counts.applied)
        self.events.labels("stale").inc(counts.stale)
        # A batch that applies waiting claims withdraws their letters (snapshot/owners.py): the counter stays.
        self.events.labels("rejected").inc(max(counts.rejected, 0))
        self.batches.inc()

    def set_hold(self, hold: Hold | None) -> None:
        self.hold.clear()  # absent when not held
        if hold is not None:
            self.hold.labels(hold.by, hold.generation_id or "").set(hold.since)

    def set_lag(self, events: int | None) -> None:
        self.lag = events

    def set_live(self, generation: str | None, published_at: float | None) -> None:
        self.live.clear()
        if generation is not None:
            self.live.labels(generation).set(1)
        self.published_at = published_at or 0.0


def build_info() -> dict[str, str]:
    try:
        importlib.import_module("sitemap_keeper.snapshot._fastrow")
        fast_path = "true"
    except ImportError:
        fast_path = "false"
    return {"version": importlib.metadata.version(DISTRIBUTION), "fast_path": fast_path}


class Situational(Collector):
    """Metrics absent until they mean something (a 0 would read as "just published" or "caught up"), and the
    outcomes of calls to S3, Kubernetes and IndexNow (snapshot/calls.py)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        if m.published_at:
            yield GaugeMetricFamily(
                "sitemaps_live_generation_age_seconds",
                "Seconds since the live generation was published; absent before the first publish",
                value=time.time() - m.published_at,
            )
        if m.lag is not None:
            yield GaugeMetricFamily(
                "sitemaps_consumer_lag",
                "Events in Kafka not yet consumed by this replica's partitions; absent when following a file",
                value=m.lag,
            )
        family = CounterMetricFamily(
            "sitemaps_calls",
            "Calls to S3, the Kubernetes API and IndexNow, by "
            "outcome: ok, retried (failed, tried again), failed (given up on)",
            labels=["service", "outcome"],
        )
        for (service, outcome), n in calls.tally().items():
            family.add_metric([service, outcome], n)
        yield family
