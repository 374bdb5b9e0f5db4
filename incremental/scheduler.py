"""The service's timers, on APScheduler: publish when dirty, prune, and a frequent look at the dirty shards.

Every job runs on one worker thread, with max_instances=1 and coalescing, so jobs never overlap each other
or themselves, and a job that fell behind runs once, not once per missed turn. Across replicas the leader
election and the manifest's publish lock keep it to one publisher/pruner at a time.
"""

from __future__ import annotations

import logging
import time

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.logs import fields
from sitemap_keeper.incremental.metrics import Metrics
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.snapshot import hold
from sitemap_keeper.snapshot.manifest.errors import PublishLockHeld
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.publish import plan
from sitemap_keeper.snapshot.refusals import EmptyManifest, Held, Refused

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0  # seconds between looks at the dirty shards (metrics, and the publish threshold)
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not two INFO lines per job run


class Timers:
    def __init__(self, app: App, metrics: Metrics, leader: Leader, offsets: OffsetStore) -> None:
        self.app = app
        self.metrics = metrics
        self.leader = leader
        self.offsets = offsets
        s = app.settings
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self.scheduler.add_job(self.publish, "interval", seconds=s.publish_interval, id="publish")
        self.scheduler.add_job(self.prune, "interval", seconds=s.prune_interval, id="prune")
        self.scheduler.add_job(self.check, "interval", seconds=min(CHECK_INTERVAL, s.publish_interval), id="check")

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop; a job in progress is finished first (a publish is crash-safe, but finished is better)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def check(self) -> None:
        """Refresh the dirty-shard and live-generation gauges; publish at once past the threshold."""
        # News files count once due: when an article of theirs ages out of the window (snapshot/news.py).
        p = plan(self.app.manifest, self.app.router.current(), now=self.app.publisher.clock())
        dirty = len(p.render) + len(p.dropped) + len(p.news)
        self.metrics.dirty.set(dirty)
        gen = self.app.manifest.generations.get(p.live) if p.live else None
        self.metrics.set_live(p.live, gen.published_at if gen else None)
        self.metrics.leader.set(1 if self.leader.is_leader() else 0)
        held = hold.current(self.app.manifest)
        self.metrics.set_hold(held)
        if dirty >= self.app.settings.publish_threshold and held is None:
            log.info("%d dirty shards: publishing now", dirty)
            self.publish()

    def publish(self) -> None:
        if not self.leader.is_leader():
            self.metrics.publishes.labels("skipped").inc()
            return
        if self.offsets.replay_pending():
            log.info("a replay has not caught up yet: not publishing")
            self.metrics.publishes.labels("skipped").inc()
            return
        started = time.monotonic()
        try:
            result = self.app.publisher.publish()
        except PublishLockHeld:
            self.metrics.publishes.labels("skipped").inc()
            return
        except EmptyManifest:
            self.metrics.publishes.labels("nothing").inc()
            return
        except Held as exc:  # the operator's decision: one line a turn, nothing switched
            log.warning("%s", exc)
            self.metrics.publishes.labels("held").inc()
            self.metrics.set_hold(hold.current(self.app.manifest))
            return
        except Refused as exc:  # the operator's to decide (a wrong manifest, a site shrinking), not to trace back
            log.error("not publishing: %s", exc)
            self.metrics.publishes.labels("failed").inc()
            return
        except Exception:
            log.exception(
                "publish failed; the live generation is unchanged, the next turn tries again",
                extra={"event": "publish_failed"},
            )
            self.metrics.publishes.labels("failed").inc()
            return
        if result.generation is None:
            self.metrics.publishes.labels("nothing").inc()
            return
        self.metrics.publish_seconds.observe(time.monotonic() - started)
        self.metrics.publishes.labels("published").inc()
        self.metrics.set_live(result.generation, time.time())
        log.info("%s", result.message, extra={"event": "published", **fields(result)})

    def prune(self) -> None:
        if not self.leader.is_leader():
            self.metrics.prunes.labels("skipped").inc()
            return
        try:
            self.app.announcer.wait()  # a diff still being recorded reads the generations prune may delete
            result = prune(self.app.manifest, self.app.store, self.app.router, keep=self.app.settings.keep)
        except PublishLockHeld:
            self.metrics.prunes.labels("skipped").inc()
            return
        except Refused as exc:  # the wrong manifest for this router: the operator's to fix, not to trace back
            log.error("not pruning: %s", exc)
            self.metrics.prunes.labels("failed").inc()
            return
        except Exception:
            log.exception("prune failed; the next turn tries again", extra={"event": "prune_failed"})
            self.metrics.prunes.labels("failed").inc()
            return
        self.metrics.prunes.labels("pruned").inc()
        if result.deleted or result.abandoned:
            log.info(
                "pruned %s; abandoned %s",
                result.deleted or "nothing",
                result.abandoned or "none",
                extra={"event": "pruned", **fields(result)},
            )
        if result.foreign:
            log.warning(
                "left alone %d generations that are not this site's: %s",
                len(result.foreign),
                ", ".join(map(str, result.foreign)),
            )
