"""Full rebuild and one-document incremental publish, end to end through the real CLI (local store).

    python bench/bench_rebuild.py --documents 1000000 [--database-url postgresql+psycopg://...]
    python bench/bench_rebuild.py --documents 4000000 20000000 4000000 --cache DIR   # growth, in one run

Prints URLs/s for the rebuild (load + full publish), the peak RSS of the largest process (the command or a
worker), and the seconds of a publish after one changed document (the command's own timing, without the
interpreter's start-up, and wall time of the whole command). Given several sizes, it runs them in that order
and ends with each size's rate against the smallest's (the growth target: 20M at 0.9 times 4M or better).
Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import catalog_file, cli, made_dir
from sitemap_keeper.snapshot import synthetic


def run(
    documents: int, src: Path, database_url: str | None, workdir: Path | None, publish_one: bool
) -> tuple[float, float, float]:
    """One rebuild of `documents` (and a one-document publish): (URLs/s, URLs per CPU second of the command and
    its workers, peak RSS MiB of its largest process)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        env = {
            **os.environ,
            "SITEMAPS_DATA_DIR": f"{tmp}/data",
            "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
            "SITEMAPS_LOG_LEVEL": "WARNING",
        }
        if database_url:
            env["SITEMAPS_DATABASE_URL"] = database_url
        logs = Path(tmp, "logs")
        step = cli(["rebuild", "--source", str(src)], env, logs)
        rate, per_cpu, rss = documents / step.wall, documents / step.cpu, step.peak_rss_mib
        print(step.out.strip())
        print(
            f"rebuild   {documents:>10,} documents  {step.wall:7.2f}s wall  {step.cpu:7.2f}s CPU  "
            f"{rate:>9,.0f} URLs/s  peak RSS {rss:.0f} MiB (largest process)",
            flush=True,
        )
        if publish_one:
            event = orjson.dumps({**synthetic.document(12345, version=2, day=3), "op": "upsert"})
            Path(tmp, "one.jsonl").write_bytes(event + b"\n")
            cli(["apply", str(Path(tmp, "one.jsonl"))], env, logs)
            step = cli(["publish"], env, logs)
            inner = float(re.search(r"in ([\d.]+)s", step.out).group(1))  # type: ignore[union-attr]
            print(step.out.strip())
            print(
                f"one-document publish at {documents:,}: {inner:.2f}s in the publisher, "
                f"{step.wall:.2f}s for the whole command",
                flush=True,
            )
    return rate, per_cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--documents",
        type=int,
        nargs="+",
        default=[1_000_000],
        help="catalog sizes, run in this order (repeat one to interleave: 4000000 20000000 4000000)",
    )
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sitemaps-bench")
    ap.add_argument("--workdir", type=made_dir, help="where the manifest and generations go (default: the system's)")
    ap.add_argument(
        "--no-publish-one",
        dest="publish_one",
        action="store_false",
        help="only the rebuilds (no one-document publish after each)",
    )
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict[int, list[tuple[float, float, float]]] = {}
    for documents in args.documents:
        src = catalog_file(documents, args.cache)
        results.setdefault(documents, []).append(run(documents, src, args.database_url, args.workdir, args.publish_one))
    if len(results) > 1:
        base = min(results)
        base_rate = statistics.median(rate for rate, _cpu, _rss in results[base])
        base_cpu = statistics.median(cpu for _rate, cpu, _rss in results[base])
        # URLs per CPU second says the same when other work shares the cores and changes between the runs.
        print(f"\ngrowth (medians of each size against {base:,} documents):")
        for documents, found in sorted(results.items()):
            rate = statistics.median(r for r, _cpu, _rss in found)
            cpu = statistics.median(c for _r, c, _rss in found)
            print(
                f"  {documents:>12,}: {rate:>9,.0f} URLs/s  {rate / base_rate:5.2f} times, "
                f"{cpu:>9,.0f} URLs per CPU second  {cpu / base_cpu:5.2f} times, "
                f"peak RSS {max(rss for _r, _c, rss in found):.0f} MiB  ({len(found)} runs: "
                f"{', '.join(f'{r:,.0f}' for r, _c, _rss in found)} URLs/s)"
            )


if __name__ == "__main__":
    main()
