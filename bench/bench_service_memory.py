"""Memory of `sitemaps run` and its worker processes while it applies a burst of events and publishes.

    python bench/bench_service_memory.py                       # 1M documents, 200,000 events, SQLite
    python bench/bench_service_memory.py --documents 200000 --events 50000

A synthetic catalog is rebuilt into a fresh data dir; `sitemaps run --follow` (publish every 2 s) is started
on an empty file, and the events are appended at once. Every 0.25 s the benchmark reads the proportional set
size (PSS, so shared pages count once) of the service and of every process under it: the parsing workers,
the render workers of each publish, the fork server. What a pod's memory limit has to hold is the largest
total; the service's own resident set is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, catalog_file, children, cli, write_events
from sitemap_keeper.snapshot import synthetic


def descendants(pid: int) -> list[int]:
    """pid and every process under it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def kib(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to sample after appending the events")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-service-memory-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "SITEMAPS_DATA_DIR": str(work / "data"),
            "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
            "SITEMAPS_LOG_LEVEL": "WARNING",
        }
        cli(["rebuild", "--source", str(catalog_file(args.documents, work))], env, work / "logs")
        feed = work / "events.jsonl"
        feed.touch()
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sitemap_keeper",
                "run",
                "--follow",
                str(feed),
                "--publish-interval",
                "2",
                "--http-port",
                "0",
            ],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4)  # started, workers up
            write_events(feed, args.events, args.documents)  # all at once, into the file it follows
            total = own = 0
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                total = max(total, sum(kib(p, "smaps_rollup", "Pss:") for p in descendants(service.pid)))
                own = max(own, kib(service.pid, "status", "VmRSS:"))
                time.sleep(0.25)
        finally:
            service.terminate()
            service.wait(timeout=60)
    print(
        f"sitemaps run, {args.documents:,} documents, {args.events:,} events: peak service RSS "
        f"{own / 1024:.0f} MiB, peak PSS of all its processes {total / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
