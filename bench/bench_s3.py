"""Benchmark: publish one changed document of a large site to S3, switching an Ingress.

    python bench/bench_s3.py --documents 4000000

Starts its own moto S3 server (a separate process, as S3 is) and the Kubernetes API stand-in
(tests/services), loads a synthetic catalog (or reuses the one in --data-dir),
publishes it in full, changes one document, and times the publish of that one change: the copies, the
uploads, the S3 requests and the seconds, step by step. The target is 2 s at 4M URLs.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import start_moto
from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.snapshot import publish as publish_module
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.publish import Publisher
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.routers.ingress import IngressRouter
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores.s3 import S3Store
from tests.services.kube import KubeAPIServer


def counting(store: S3Store) -> Counter[str]:
    """Count the store's puts and copies and the S3 requests by method (thread-safe)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with lock:
                counts[name if name != "request" else f"{args[0]} requests"] += 1
            return fn(*args, **kwargs)

        return counted

    store.put = wrap("uploads", store.put)  # type: ignore[method-assign]
    store.copy = wrap("copies", store.copy)  # type: ignore[method-assign]
    store.client._url_open = wrap("request", store.client._url_open)  # type: ignore[method-assign]
    return counts


def timed_steps() -> list[tuple[str, float]]:
    """Record when publish passes each of its crash points (snapshot.crashpoints.checkpoint)."""
    marks: list[tuple[str, float]] = []
    publish_module.__dict__["checkpoint"] = lambda step: marks.append((step, time.monotonic()))
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=4_000_000)
    parser.add_argument(
        "--data-dir", type=Path, help="keep the manifest here; a manifest already loaded there is reused"
    )
    parser.add_argument("--database-url", help="the manifest (default: SQLite in the data directory)")
    parser.add_argument("--parallelism", type=int, default=16, help="S3 requests in flight")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--repeat", type=int, default=3, help="one-document publishes to time")
    args = parser.parse_args()

    tmp = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-s3-"))
    tmp.mkdir(parents=True, exist_ok=True)
    moto, endpoint = start_moto(tmp / "moto.log")
    kube = KubeAPIServer().start()
    try:
        kube.seed_ingress("sitemaps", path="/sitemaps(/|$)(.*)")
        database_url = args.database_url or f"sqlite:///{tmp / 'manifest.db'}"
        settings = Settings(
            data_dir=tmp,
            database_url=database_url,
            allowed_hosts=(synthetic.HOST,),
            storage="s3",
            s3_endpoint=endpoint,
            s3_access_key="bench",
            s3_secret_key="bench-secret",
            s3_secure=False,
            s3_region="us-east-1",
            workers=args.workers,
        )
        manifest = Manifest.open(settings.manifest_url)
        store = S3Store.from_settings(settings, parallelism=args.parallelism)
        router = IngressRouter(kube.api_client(), "default", "sitemaps", Layout())
        publisher = Publisher(manifest, store, router, settings.base_url, settings.limits, workers=args.workers)

        started = time.monotonic()
        if manifest.reader.url_count() == 0:
            Rebuilder(manifest, settings.rules, settings.limits, args.workers).rebuild(
                row_chunks("synthetic", synthetic.catalog(args.documents))
            )
            print(f"load {args.documents:,} documents: {time.monotonic() - started:.1f}s", flush=True)
        else:
            print(f"reusing the manifest in {tmp}: {manifest.reader.url_count():,} URLs")
        started = time.monotonic()
        print(f"{publisher.publish(full=True).message} (full publish: {time.monotonic() - started:.1f}s)")

        applier = Applier(manifest, settings.rules, settings.limits)
        counts, marks = counting(store), timed_steps()
        times = []
        for run in range(1, args.repeat + 1):
            # A newer version of one document (newer on every run, so a reused manifest sees a change too).
            change = orjson.dumps(synthetic.document(args.documents // 2 + run, version=time.time_ns(), day=3))
            applier.apply_raw([(f"bench:{run}", change)])
            counts.clear()
            marks.clear()
            started = time.monotonic()
            result = publisher.publish()
            seconds = time.monotonic() - started
            times.append(seconds)
            print(
                f"run {run}: one-document publish at {result.urls:,} URLs: {seconds:.2f}s; "
                f"copies {counts['copies']}, uploads {counts['uploads']} "
                f"({result.rendered} shard + {counts['uploads'] - result.rendered} indexes), "
                f"files {result.files}"
            )
            print(
                "  S3 requests: "
                + ", ".join(f"{k.split()[0]} {v}" for k, v in sorted(counts.items()) if k.endswith("requests"))
            )
            points = [("plan", started), *marks, ("", started + seconds)]
            print(
                "  "
                + ", ".join(
                    f"{step} {until - at:.3f}s"  # from this crash point to the next
                    for (step, at), (_next, until) in itertools.pairwise(points)
                )
            )
        print(
            f"one-document publish: best {min(times):.2f}s, median {statistics.median(times):.2f}s "
            f"of {len(times)} (target 2 s)"
        )
        manifest.close()
        router.api.close()
    finally:
        kube.stop()
        moto.stop()
        if args.data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
