"""What the one-URL-one-document rule (snapshot/owners.py) adds per document to a rebuild, measured in parts
beside the parts it sits next to, on the same machine at the same moment.

    python bench/bench_owners.py [--documents 200000]

Prints microseconds per document: the URL hash (in the rebuild's workers and in the applying process), the
claims' load (json_each, as `url_claims.load_runs`) beside the documents rows' load (as `Manifest.load_documents`),
the claims' unique index beside the documents' key index, and the apply path in this process (batches of 20,000
new documents, then 20,000 updates, on SQLite, best of 3). Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import timeit
from pathlib import Path

import orjson

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.bulk import SIZE_BITS
from sitemap_keeper.snapshot.owners import loc_hash

RUN = 5_000  # documents per run, about what a worker's chunk holds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=200_000)
    n = ap.parse_args().documents
    locs = [f"https://librer.io/books/{i}-a-title-of-some-words" for i in range(n)]
    hashing = min(timeit.repeat(lambda: tuple(map(loc_hash, locs)), number=1, repeat=3))
    keys = [str(i) for i in range(n)]
    hashes = list(map(loc_hash, locs))
    claims = [orjson.dumps(dict(zip(keys[r : r + RUN], hashes[r : r + RUN], strict=True))) for r in range(0, n, RUN)]
    codes = [orjson.dumps(dict.fromkeys(keys[r : r + RUN], 300 + (2 << SIZE_BITS))) for r in range(0, n, RUN)]
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp, "m.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE claims (loc_hash BIGINT NOT NULL, section TEXT, key TEXT, ord BIGINT)")
        db.execute("CREATE TABLE docs (section TEXT, key TEXT, shard_no INT, version BIGINT, size INT)")
        started = time.perf_counter()
        db.execute("BEGIN")
        for i, data in enumerate(claims):
            db.execute("INSERT INTO claims SELECT value, ?, key, ? + id FROM json_each(?)", ("books", i << 32, data))
        db.execute("COMMIT")
        claims_load = time.perf_counter() - started
        started = time.perf_counter()
        db.execute("BEGIN")
        for i, data in enumerate(codes):
            db.execute(
                f"INSERT INTO docs SELECT ?, key, ?, NULLIF(value >> {SIZE_BITS}, 0) - 1, "
                f"value & {(1 << SIZE_BITS) - 1} FROM json_each(?)",
                ("books", i, data),
            )
        db.execute("COMMIT")
        docs_load = time.perf_counter() - started
        db.execute("PRAGMA threads = 2")
        started = time.perf_counter()
        db.execute("CREATE UNIQUE INDEX ux_claims ON claims (loc_hash)")
        claims_index = time.perf_counter() - started
        started = time.perf_counter()
        db.execute("CREATE UNIQUE INDEX ux_docs ON docs (section, key)")
        docs_index = time.perf_counter() - started
        db.close()
    us = 1e6 / n
    print(f"{n:,} documents, microseconds per document:")
    print(f"  URL hash {hashing * us:.2f}")
    print(f"  claims load {claims_load * us:.2f} (documents rows load {docs_load * us:.2f})")
    print(f"  claims unique index {claims_index * us:.2f} (documents key index {docs_index * us:.2f})")
    print("  apply: new {:.1f}, updates {:.1f}".format(*apply_path()))


def apply_path(batch: int = 20_000) -> tuple[float, float]:
    """Microseconds per event of `Applier.apply_raw` in this process: new documents, then updates of them."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Manifest.open(f"sqlite:///{tmp}/m.db")
        applier = Applier(manifest, Rules(frozenset({synthetic.HOST})), Limits(), workers=0)
        docs = [orjson.dumps(d) for d in synthetic.catalog(3 * batch)]
        new = []
        for r in range(3):
            started = time.perf_counter()
            applier.apply_raw([("bench", d) for d in docs[r * batch : (r + 1) * batch]])
            new.append(time.perf_counter() - started)
        updates = []
        for r in range(3):
            changed = [
                orjson.dumps({**orjson.loads(d), "version": 10**6 + r}) for d in docs[r * batch : (r + 1) * batch]
            ]
            started = time.perf_counter()
            applier.apply_raw([("bench", d) for d in changed])
            updates.append(time.perf_counter() - started)
        applier.close()
        manifest.close()
    return min(new) / batch * 1e6, min(updates) / batch * 1e6


if __name__ == "__main__":
    main()
