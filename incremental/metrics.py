"""Prometheus metrics of the service, in a registry of its own (several services can live in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sitemap_keeper.snapshot.manifest import Counts


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter("sitemaps_events", "Events consumed, by result: applied, stale (an older "
                              "version than the manifest's: ignored) or rejected (dead-lettered)",
                              ["result"], registry=r)
        self.batches = Counter("sitemaps_batches", "Batches committed to the manifest", registry=r)
        self.conflicts = Counter("sitemaps_offset_conflicts", "Batches rolled back because another consumer "
                                 "had moved their partitions on (a rebalance)", registry=r)
        self.lag = Gauge("sitemaps_consumer_lag", "Events (Kafka) or bytes (a followed file) not yet "
                         "consumed by this replica", registry=r)
        self.unaccounted = Gauge("sitemaps_source_unaccounted", "Times this run found events it could not "
                                 "account for (a followed file rotated or truncated before it was read to its "
                                 "end); the log says what", registry=r)
        self.dirty = Gauge("sitemaps_dirty_shards", "Shards whose content differs from the live generation",
                           registry=r)
        self.publish_seconds = Histogram("sitemaps_publish_duration_seconds", "Duration of publishes",
                                         buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
                                         registry=r)
        self.publishes = Counter("sitemaps_publishes", "Publish attempts by result: published, nothing "
                                 "(no dirty shard), skipped (another replica publishes), failed", ["result"],
                                 registry=r)
        self.prunes = Counter("sitemaps_prunes", "Prune runs by result", ["result"], registry=r)
        self.live = Gauge("sitemaps_live_generation", "The live generation (as a label); value 1",
                          ["generation"], registry=r)
        self.published_at = 0.0
        Gauge("sitemaps_live_generation_age_seconds", "Seconds since the live generation was published",
              registry=r).set_function(lambda: time.time() - self.published_at if self.published_at else 0.0)
        self.ready = Gauge("sitemaps_ready", "1 when events can flow (source reachable, manifest writable)",
                           registry=r)
        self.leader = Gauge("sitemaps_leader", "1 while this replica may publish and prune", registry=r)
        self.paused = Gauge("sitemaps_paused_for_rebuild", "1 while events wait for a running rebuild's swap",
                            registry=r)
        for result in ("applied", "stale", "rejected"):
            self.events.labels(result)  # show zeros from the start
        for result in ("published", "nothing", "skipped", "failed"):
            self.publishes.labels(result)

    def counted(self, counts: Counts) -> None:
        self.events.labels("applied").inc(counts.applied)
        self.events.labels("stale").inc(counts.stale)
        self.events.labels("rejected").inc(counts.rejected)
        self.batches.inc()

    def set_live(self, generation: str | None, published_at: float | None) -> None:
        self.live.clear()
        if generation is not None:
            self.live.labels(generation).set(1)
        self.published_at = published_at or 0.0
