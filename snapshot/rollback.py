"""Rollback: switch the router back to a retained generation, after checking it is still complete."""

from __future__ import annotations

from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store
from sitemap_keeper.snapshot.verify import verify_generation


class RollbackError(RuntimeError):
    pass


def rollback(manifest: Manifest, store: Store, router: Router, target: str | None = None,
             limits: Limits | None = None) -> tuple[str | None, str]:
    """Point the router at `target` (default: the newest retained generation older than the live one).

    Returns (previous, target). The next publish brings the manifest's current state back on top of it.
    """
    with manifest.publish_lock():
        live = router.current()
        retained = [g for g in manifest.generations() if g.state in ("live", "retired") and g.id != live]
        if target is None:
            older = [g.id for g in retained if live is None or g.id < live]
            if not older:
                raise RollbackError(f"no retained generation older than the live one ({live}) to roll back to")
            target = older[-1]
        elif target not in {g.id for g in retained}:
            raise RollbackError(f"generation {target} is not a retained generation; "
                                f"retained: {', '.join(g.id for g in retained) or 'none'}")
        files = manifest.files(target)
        verify_generation(store, target, files, limits or Limits())
        store.make_public(target)
        router.switch(target, expected=live)
        manifest.set_state(target, "live")
    return live, target
