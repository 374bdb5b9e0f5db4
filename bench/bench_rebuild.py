"""Full rebuild and one-document incremental publish, end to end through the real CLI (local store).

    python bench/bench_rebuild.py --documents 1000000 [--database-url postgresql+psycopg://...]

Prints URLs/s for the rebuild (load + full publish), the peak RSS of the main process and of the largest
worker, and the seconds of a publish after one changed document (the command's own timing, without the
interpreter's start-up, and wall time of the whole command). Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import catalog_file, cli
from sitemap_keeper.snapshot import synthetic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=1_000_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sitemaps-bench")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    src = catalog_file(args.documents, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SITEMAPS_DATA_DIR": f"{tmp}/data", "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
               "SITEMAPS_LOG_LEVEL": "WARNING"}
        if args.database_url:
            env["SITEMAPS_DATABASE_URL"] = args.database_url
        logs = Path(tmp, "logs")
        step = cli(["rebuild", "--source", str(src)], env, logs)
        print(step.out.strip())
        print(f"rebuild   {args.documents:>10,} documents  {step.wall:7.2f}s wall  "
              f"{args.documents / step.wall:>9,.0f} URLs/s  peak RSS {step.peak_rss_mib:.0f} MiB (largest process)")
        event = orjson.dumps({**synthetic.document(12345, version=2, day=3), "op": "upsert"})
        Path(tmp, "one.jsonl").write_bytes(event + b"\n")
        cli(["apply", str(Path(tmp, "one.jsonl"))], env, logs)
        step = cli(["publish"], env, logs)
        inner = float(re.search(r"in ([\d.]+)s", step.out).group(1))  # type: ignore[union-attr]
        print(step.out.strip())
        print(f"one-document publish at {args.documents:,}: {inner:.2f}s in the publisher, "
              f"{step.wall:.2f}s for the whole command")


if __name__ == "__main__":
    main()
