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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snapshot import synthetic


def source(n: int, cache: Path) -> Path:
    path = cache / f"catalog-{n}.jsonl"
    if not path.exists():
        with open(path.with_suffix(".tmp"), "wb") as f:
            for _, d in synthetic.catalog(n):
                f.write(orjson.dumps(d) + b"\n")
        path.with_suffix(".tmp").rename(path)
    return path


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "incremental.cli", *args], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr}")
    return time.monotonic() - started, proc.stdout


def peak_rss_mib() -> float:
    """The peak RSS of the largest process run so far (the command or one of its workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=1_000_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sitemaps-bench")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    src = source(args.documents, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SITEMAPS_DATA_DIR": f"{tmp}/data", "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
               "SITEMAPS_LOG_LEVEL": "WARNING"}
        if args.database_url:
            env["SITEMAPS_DATABASE_URL"] = args.database_url
        seconds, out = run(["rebuild", "--source", str(src)], env)
        print(out.strip())
        print(f"rebuild   {args.documents:>10,} documents  {seconds:7.2f}s wall  "
              f"{args.documents / seconds:>9,.0f} URLs/s  peak RSS {peak_rss_mib():.0f} MiB (largest process)")
        event = orjson.dumps({**synthetic.document(12345, version=2, day=3), "op": "upsert"})
        Path(tmp, "one.jsonl").write_bytes(event + b"\n")
        run(["apply", str(Path(tmp, "one.jsonl"))], env)
        seconds, out = run(["publish"], env)
        inner = float(re.search(r"in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
        print(out.strip())
        print(f"one-document publish at {args.documents:,}: {inner:.2f}s in the publisher, "
              f"{seconds:.2f}s for the whole command")


if __name__ == "__main__":
    main()
