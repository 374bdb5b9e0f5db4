"""Rollback: switch the router back to a retained generation, after checking it is still complete."""

from __future__ import annotations

from sitemap_keeper.snapshot import hold as holds
from sitemap_keeper.snapshot.hold import Hold
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.ownership import Owner, site_id
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store
from sitemap_keeper.snapshot.verify import verify_generation


class RollbackError(RuntimeError):
    pass


def rollback(
    manifest: Manifest,
    store: Store,
    router: Router,
    target: str | None = None,
    limits: Limits | None = None,
    hold: Hold | None = None,
) -> tuple[str | None, str]:
    """Point the router at `target` (default: the newest retained generation older than the live one), if it is
    this site's (snapshot/ownership.py).

    Returns (previous, target). With `hold` (its generation is set to the target), the site is held there
    before the switch, so that no publish brings the manifest's state back on top of it until released;
    without, the next publish does.
    """
    with manifest.locks.publish():
        live = router.current()
        gens = manifest.generations.all()  # by id: publish order (snapshot/generation.py)
        retained = [g for g in gens if g.state in ("live", "retired") and g.id != live]
        if target is None:
            if live is not None and all(g.id != live for g in gens):
                raise RollbackError(
                    f"the router serves generation {live}, which this manifest never published: "
                    "no generation of this manifest comes before it. Check that the manifest is "
                    "the one that publishes this site (SITEMAPS_DATABASE_URL), or name the "
                    "generation to switch to"
                )
            older = [g.id for g in retained if live is None or g.id < live]
            if not older:
                raise RollbackError(f"no retained generation older than the live one ({live}) to roll back to")
            target = older[-1]
        elif target not in {g.id for g in retained}:
            raise RollbackError(
                f"generation {target} is not a retained generation; "
                f"retained: {', '.join(g.id for g in retained) or 'none'}"
            )
        verify_generation(store, target, manifest.generations.files(target), limits or Limits())
        foreign = Owner(site_id(manifest), store, (g.id for g in gens)).claim(target)
        if foreign is not None:
            raise RollbackError(f"generation {foreign} is not this site's: not switching to it")
        store.make_public(target)
        if hold is not None:
            _switch_held(manifest, router, live, target, hold)
        else:
            router.switch(target, expected=live)
        manifest.generations.set_state(target, "live")
    return live, target


def _switch_held(manifest: Manifest, router: Router, live: str | None, target: str, hold: Hold) -> None:
    """Hold first, then switch: a crash in between leaves a held site, never a rollback the next publish
    undoes. A switch that fails puts the hold back as it was."""
    before = holds.current(manifest)
    holds.put(manifest, Hold(target, hold.since, hold.by, hold.reason))
    try:
        router.switch(target, expected=live)
    except BaseException:
        holds.put(manifest, before)
        raise
