"""Prune: delete old generations beyond the ones kept for rollback, and what crashed publishes left behind.

Only this site's generations are ever deleted (snapshot/ownership.py): one stamped by another site, or unstamped
and never recorded by this manifest, is reported and left alone. Generations are ordered by id, which is their
publish order whatever the clock did (snapshot/generation.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sitemap_keeper.snapshot.crashpoints import checkpoint
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import Generation
from sitemap_keeper.snapshot.ownership import Foreign, Owner, site_id
from sitemap_keeper.snapshot.refusals import ForeignLive
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store

log = logging.getLogger(__name__)

KEEP = 3
GRACE_SECONDS = 3600.0  # a generation younger than this may still be being built by another process
PUBLISHED = ("live", "retired")
NEVER_LIVE = ("building", "ready", "failed")


@dataclass(slots=True)
class PruneResult:
    live: str | None
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    foreign: list[Foreign] = field(default_factory=list)  # not this site's: reported, never deleted


@dataclass(slots=True)
class _Run:
    """One prune: what the manifest knows, what the store holds, and what is kept."""

    manifest: Manifest
    store: Store
    owner: Owner
    known: dict[str, Generation]
    kept: set[str]
    newest: str | None  # the newest published generation: every never-live one before it is abandoned
    result: PruneResult

    def stale(self, g: Generation, grace: float, now: float) -> bool:
        """A never-live generation nobody is building: past the grace period, or begun before a publish that
        came after it (by id: publish order, not the clock, which may have gone back)."""
        return now - g.created_at >= grace or (self.newest is not None and g.id < self.newest)

    def delete(self, gen_id: str, step: str) -> bool:
        """Delete a generation of the store if it is this site's; report it otherwise."""
        foreign = self.owner.claim(gen_id)
        if foreign is not None:
            self.result.foreign.append(foreign)
            return False
        self.store.delete(gen_id)
        checkpoint(step)  # deleted, not yet recorded: the next prune records it
        return True


def prune(
    manifest: Manifest,
    store: Store,
    router: Router,
    keep: int = KEEP,
    grace: float = GRACE_SECONDS,
    now: float | None = None,
) -> PruneResult:
    """Keep the live generation and the newest `keep` published ones (the live one counts); delete the rest.

    Generations that never went live (a crash or failure before the switch) are deleted once stale. The live
    generation is never deleted, whatever the manifest says: it is read from the router itself. When the router
    serves a generation this manifest never published (the wrong manifest), nothing is deleted: ForeignLive.
    """
    if keep < 1:
        raise ValueError(f"--keep must be at least 1 (the live generation), got {keep}")
    now = time.time() if now is None else now
    with manifest.locks.publish():
        live = router.current()
        gens = manifest.generations.all()
        known = {g.id: g for g in gens}
        if live is not None and live not in known:
            raise ForeignLive(
                f"the router serves generation {live}, which this manifest never published: not pruning (what it "
                "would delete may be the live site's rollback targets). Check that the manifest is the one that "
                "publishes this site (SITEMAPS_DATABASE_URL)"
            )
        published = sorted((g.id for g in gens if g.state in PUBLISHED or g.id == live), reverse=True)
        kept = set(published[:keep]) | ({live} if live else set())
        run = _Run(
            manifest,
            store,
            Owner(site_id(manifest), store, known),
            known,
            kept,
            published[0] if published else None,
            PruneResult(live, kept=sorted(kept, reverse=True)),
        )
        present = store.generations()
        for gen_id in present:
            _prune_one(run, gen_id, grace, now)
        _record_gone(run, set(present), grace, now)
    return run.result


def _prune_one(run: _Run, gen_id: str, grace: float, now: float) -> None:
    g = run.known.get(gen_id)
    if g is None:  # never recorded here: another site's, whatever it looks like
        run.result.foreign.append(Foreign(gen_id, run.store.read_stamp(gen_id)))
    elif gen_id in run.kept:
        foreign = run.owner.claim(gen_id)  # stamps it if it predates stamps
        if foreign is not None:
            run.result.foreign.append(foreign)
    elif g.state in PUBLISHED:
        if run.delete(gen_id, "prune-delete"):
            run.manifest.generations.set_state(gen_id, "pruned")
            run.result.deleted.append(gen_id)
    elif run.stale(g, grace, now) and run.delete(gen_id, "prune-abandoned"):
        run.manifest.generations.set_state(gen_id, "pruned" if g.state == "pruned" else "abandoned")
        run.result.abandoned.append(gen_id)


def _record_gone(run: _Run, present: set[str], grace: float, now: float) -> None:
    """Generations the manifest still counts that are gone from the store (a prune cut short after deleting)."""
    for g in run.known.values():
        if g.id in present or g.id in run.kept:
            continue
        if g.state in PUBLISHED:
            run.manifest.generations.set_state(g.id, "pruned")
            run.result.deleted.append(g.id)
        elif g.state in NEVER_LIVE and run.stale(g, grace, now):
            run.manifest.generations.set_state(g.id, "abandoned")
