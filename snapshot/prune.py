"""Prune: delete old generations beyond the ones kept for rollback, and what crashed publishes left behind."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sitemap_keeper.snapshot import generation
from sitemap_keeper.snapshot.faults import checkpoint
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store

log = logging.getLogger(__name__)

KEEP = 3
GRACE_SECONDS = 3600.0  # a generation younger than this may still be being built by another process
PUBLISHED = ("live", "retired")


@dataclass(slots=True)
class PruneResult:
    live: str | None
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


def prune(manifest: Manifest, store: Store, router: Router, keep: int = KEEP, grace: float = GRACE_SECONDS,
          now: float | None = None) -> PruneResult:
    """Keep the live generation and the newest `keep` published ones (the live one counts); delete the rest.

    Generations that never went live (a crash or failure before the switch) and containers the manifest does
    not know are deleted once older than `grace`. The live generation is never deleted, whatever the manifest
    says: it is read from the router itself.
    """
    if keep < 1:
        raise ValueError(f"--keep must be at least 1 (the live generation), got {keep}")
    now = time.time() if now is None else now
    with manifest.publish_lock():
        live = router.current()
        result = PruneResult(live)
        gens = manifest.generations()
        published = sorted((g.id for g in gens if g.state in PUBLISHED or g.id == live), reverse=True)
        kept = set(published[:keep]) | ({live} if live else set())
        result.kept = sorted(kept, reverse=True)
        for gen_id in published:
            if gen_id not in kept:
                store.delete(gen_id)
                checkpoint("prune-delete")  # deleted, not yet recorded: the next prune records it
                manifest.set_state(gen_id, "pruned")
                result.deleted.append(gen_id)
        known = {g.id: g for g in gens}
        for gen_id in store.generations():
            g = known.get(gen_id)
            if gen_id in kept or (g is not None and g.state in PUBLISHED):
                continue
            created = g.created_at if g is not None else _created(gen_id)
            if created is not None and now - created < grace:
                continue  # perhaps still being built
            store.delete(gen_id)
            checkpoint("prune-abandoned")
            if g is not None:
                manifest.set_state(gen_id, "pruned" if g.state == "pruned" else "abandoned")
            result.abandoned.append(gen_id)
        for g in gens:  # built but never switched to, and already gone from the store
            if g.state in ("building", "ready", "failed") and g.id not in kept and now - g.created_at >= grace:
                manifest.set_state(g.id, "abandoned")
    return result


def _created(gen_id: str) -> float | None:
    try:
        return generation.created_at(gen_id)
    except ValueError:
        return None  # not one of ours: leave it alone
