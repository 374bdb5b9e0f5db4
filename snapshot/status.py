"""What `sitemaps status` reports: the live generation, what is retained, what is dirty, what was refused."""

from __future__ import annotations

import time
from typing import Any

from sitemap_keeper.snapshot import diff, hold, indexnow, naming, ownership
from sitemap_keeper.snapshot.manifest import Manifest, url_claims
from sitemap_keeper.snapshot.publish import plan
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store


def sitemap_lines(manifest: Manifest, live: str | None, base_url: str) -> list[str]:
    """The `Sitemap:` lines for robots.txt: the live generation's root index (or numbered root indexes)."""
    if live is None:
        return []
    roots = sorted((n for n in manifest.generations.files(live) if naming.is_root_index(n)), key=_index_order)
    return [f"Sitemap: {base_url}{name}" for name in roots]


def _index_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if len(parts) == 3 else 0, name)


def _last_diff(manifest: Manifest, live: str | None) -> dict[str, Any] | None:
    """What the live generation changed against the one it was published on, as recorded then."""
    rec = diff.recorded(manifest, live) if live else None
    if rec is None:
        return None
    return {"generation": rec.generation_id, "base": rec.base_id, **diff.as_json(rec.sections)}


def status(manifest: Manifest, store: Store, router: Router, base_url: str, now: float | None = None) -> dict[str, Any]:
    live = router.current()
    gens = manifest.generations.all()
    live_gen = next((g for g in gens if g.id == live), None)
    p = plan(manifest, live, now=now)
    sections = manifest.reader.section_counts()
    lines = sitemap_lines(manifest, live, base_url)
    notes = []
    if len(lines) > 1:
        notes.append(
            f"more shards than one index may list: {len(lines)} numbered root indexes, list every one in robots.txt"
        )
    held = hold.current(manifest)
    if live is not None and live_gen is None:
        notes.append(f"the router points at {live}, which this manifest did not publish")
    return {
        "store": store.describe(),
        "site": ownership.site_id(manifest),  # the identity its generations are stamped with
        "router": router.describe(),
        "live_generation": live,
        "live_since": live_gen.published_at if live_gen else None,
        "hold": held.as_json() if held else None,
        "live_age_seconds": (time.time() - live_gen.published_at) if live_gen and live_gen.published_at else None,
        "retained_generations": [g.id for g in reversed(gens) if g.state in ("live", "retired")],  # newest first
        "sections": {s: {"shards": n, "urls": u} for s, (n, u) in sections.items()},
        "shards": sum(n for n, _ in sections.values()),
        "urls": sum(u for _, u in sections.values()),
        "dirty_shards": len(p.render) + len(p.dropped) + len(p.news),
        "news_files_due": len(p.news),  # changed, or an article aged out of the window (snapshot/news.py)
        "news_next_expiry": p.news_expiry,  # when the next live news file is due (epoch seconds)
        "dead_letters": manifest.dead_letters.count(),
        "waiting_url_claims": url_claims.waiting_claims(manifest),  # refused for a URL held, waiting for it
        "sitemap_lines": lines,
        "last_diff": _last_diff(manifest, live),
        "indexnow": indexnow.last_outcomes(manifest),
        "notes": notes,
    }
