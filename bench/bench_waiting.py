"""What claims waiting for a URL (snapshot/owners.py) cost the apply path: `bench_owners.apply_path`'s batches
with WAITING claims waiting, for URLs held by documents the batches never touch.

    python bench/bench_waiting.py [--waiting 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import orjson

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest

BATCH = 20_000


def timed(applier: Applier, raws: list[bytes]) -> float:
    started = time.perf_counter()
    applier.apply_raw([("bench", raw) for raw in raws])
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--waiting", type=int, default=100)
    waiting = ap.parse_args().waiting
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Manifest.open(f"sqlite:///{tmp}/m.db")
        applier = Applier(manifest, Rules(frozenset({synthetic.HOST})), Limits(), workers=0)
        docs = list(synthetic.catalog(3 * BATCH + waiting))
        held = docs[3 * BATCH :]
        applier.apply_raw([("bench", orjson.dumps(d)) for d in held])
        counts = applier.apply_raw([("bench", orjson.dumps({**d, "key": f"w{d['key']}"})) for d in held])
        assert counts.rejected == waiting, counts
        raws = [orjson.dumps(d) for d in docs[: 3 * BATCH]]
        new = [timed(applier, raws[r * BATCH : (r + 1) * BATCH]) for r in range(3)]
        updates = [
            timed(
                applier,
                [orjson.dumps({**orjson.loads(d), "version": 10**6 + r}) for d in raws[r * BATCH : (r + 1) * BATCH]],
            )
            for r in range(3)
        ]
        applier.close()
        manifest.close()
    print(
        f"{waiting} claims waiting: new {min(new) / BATCH * 1e6:.1f} µs an event, "
        f"updates {min(updates) / BATCH * 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
