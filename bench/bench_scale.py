"""The scale benchmark: the whole life of a large site, end to end through the real CLI, per deployment.

    python bench/bench_scale.py --documents 4000000 --config all --json scale-4m.json
    python bench/bench_scale.py --documents 20000000 --config sqlite-local --json scale-20m.json
    python bench/bench_scale.py --table scale-4m.json        # print the Markdown table of a saved run again

Per configuration (manifest on SQLite or PostgreSQL, generations on the local store or on S3 behind an
Ingress), each step a `sitemaps` subprocess: a full rebuild from a JSON-lines catalog (load + full publish),
applying mixed change events (snapshot/synthetic.changes: 85% updates, 10% new documents, 5% deletions),
the incremental publish of what they dirtied, one changed document applied and published, and a prune down
to the live generation. Every step is measured on its own: wall seconds, the command's own timing where it
prints one, CPU seconds and the peak RSS of its largest process (the command or one of its workers, read
with wait4 from every process of the step). Prints Markdown tables (the run, then each step); --json writes the figures.

S3 is moto in a process of its own, the Ingress the Kubernetes API stand-in (tests/services); PostgreSQL a
scratch database on 127.0.0.1:5432. Neither the servers' memory nor their CPU is counted. Everything is
removed afterwards: the working directory, the scratch databases, and moto's buckets with its process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Step, catalog_file, cli, database, made_dir, start_moto, write_events
from sitemap_keeper.snapshot import synthetic
from tests.services.kube import KubeAPIServer
from tests.services.s3 import DEFAULT_ACCESS_KEY, DEFAULT_REGION, DEFAULT_SECRET_KEY

CONFIGS = {  # name -> (manifest database, store)
    "sqlite-local": ("sqlite", "local"),
    "postgresql-local": ("postgresql", "local"),
    "sqlite-s3": ("sqlite", "s3"),
    "postgresql-s3": ("postgresql", "s3"),
}
PUBLISHED = re.compile(
    r"(?P<rendered>\d+) shards rendered, (?P<copied>\d+) copied, (?P<urls>\d+) URLs "
    r"in (?P<seconds>[\d.]+)s"
)
COUNTED = re.compile(
    r"applied (?P<applied>\d+), stale (?P<stale>\d+), rejected (?P<rejected>\d+) "
    r"in (?P<seconds>[\d.]+)s"
)


@contextmanager
def deployment(config: str, workdir: Path, workers: int) -> Iterator[dict[str, str]]:
    """The environment of the `sitemaps` commands for one configuration, with its servers running."""
    kind, storage = CONFIGS[config]
    with database(kind, workdir) as url:
        env = {
            **os.environ,
            "SITEMAPS_DATA_DIR": str(workdir / "data"),
            "SITEMAPS_DATABASE_URL": url,
            "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
            "SITEMAPS_LOG_LEVEL": "WARNING",
            "SITEMAPS_WORKERS": str(workers),
        }
        if storage == "local":
            yield env
            return
        moto, endpoint = start_moto(workdir / "moto.log")
        kube = KubeAPIServer().start()
        try:
            kube.seed_ingress("sitemaps", path="/sitemaps(/|$)(.*)")
            env.update(
                {
                    "SITEMAPS_STORAGE": "s3",
                    "SITEMAPS_S3_ENDPOINT": endpoint,
                    "SITEMAPS_S3_ACCESS_KEY": DEFAULT_ACCESS_KEY,
                    "SITEMAPS_S3_SECRET_KEY": DEFAULT_SECRET_KEY,
                    "SITEMAPS_S3_SECURE": "false",
                    "SITEMAPS_S3_REGION": DEFAULT_REGION,
                    "SITEMAPS_ROUTER": "ingress",
                    "SITEMAPS_KUBE_API": kube.url,
                }
            )
            yield env
        finally:
            kube.stop()
            moto.stop()  # its buckets were in its memory


def parsed(pattern: re.Pattern[str], step: Step) -> dict[str, float]:
    found = pattern.search(step.out)
    if found is None:
        raise SystemExit(f"unexpected output of sitemaps {' '.join(step.args)}:\n{step.out}")
    return {k: float(v) if "." in v else int(v) for k, v in found.groupdict().items()}


def run_config(config: str, documents: int, source: Path, events: Path, workdir: Path, workers: int) -> dict[str, Any]:
    """Every step of one configuration, in order, on a fresh manifest and store."""
    n_events = sum(1 for _ in events.open("rb"))
    one = workdir / "one.jsonl"  # newer than every event above, so it is applied whatever they did to it
    one.write_bytes(
        orjson.dumps({**synthetic.document(documents // 2, version=n_events + 10, day=3), "op": "upsert"}) + b"\n"
    )
    logs = workdir / "logs"
    steps: dict[str, Step] = {}
    with deployment(config, workdir, workers) as env:
        for name, args in (
            ("rebuild", ["rebuild", "--source", str(source)]),
            ("apply", ["apply", str(events)]),
            ("publish", ["publish"]),
            ("apply-one", ["apply", str(one)]),
            ("publish-one", ["publish"]),
            ("prune", ["prune", "--keep", "1"]),
        ):
            step = steps[name] = cli(args, env, logs)
            print(
                f"  {config} {name}: {step.wall:.2f}s wall, {step.cpu:.1f}s CPU, peak RSS "
                f"{step.peak_rss_mib:.0f} MiB (command {step.command_rss_mib:.0f})",
                file=sys.stderr,
                flush=True,
            )
    return summary(config, documents, n_events, steps)


def summary(config: str, documents: int, n_events: int, steps: dict[str, Step]) -> dict[str, Any]:
    rebuild, apply, publish, one = steps["rebuild"], steps["apply"], steps["publish"], steps["publish-one"]
    loaded = float(re.search(r"manifest rebuilt: .* in ([\d.]+)s", rebuild.out).group(1))  # type: ignore[union-attr]
    counted = parsed(COUNTED, apply)
    pruned = re.search(r"deleted (\d+); abandoned deleted (\d+)", steps["prune"].out)
    peak = max(steps, key=lambda name: steps[name].peak_rss_mib)
    return {
        "config": config,
        "database": CONFIGS[config][0],
        "storage": CONFIGS[config][1],
        "documents": documents,
        "events": n_events,
        "rebuild": {
            "seconds": rebuild.wall,
            "urls_per_second": documents / rebuild.wall,
            "load_seconds": loaded,
            "publish": parsed(PUBLISHED, rebuild),
        },
        "apply": {**counted, "wall_seconds": apply.wall, "events_per_second": n_events / counted["seconds"]},
        "publish": {**parsed(PUBLISHED, publish), "wall_seconds": publish.wall},
        "one_document_publish": {**parsed(PUBLISHED, one), "wall_seconds": one.wall},
        "prune": {"seconds": steps["prune"].wall, "deleted": sum(int(g) for g in pruned.groups()) if pruned else None},
        "peak_rss_mib": steps[peak].peak_rss_mib,
        "peak_rss_step": peak,
        "publish_vs_rebuild": publish.wall / rebuild.wall,
        "steps": {
            name: {
                "wall_seconds": s.wall,
                "cpu_seconds": s.cpu,
                "peak_rss_mib": s.peak_rss_mib,
                "command_rss_mib": s.command_rss_mib,
            }
            for name, s in steps.items()
        },
    }


def table(report: dict[str, Any]) -> str:
    """The Markdown table of a run (from its JSON, so that the docs can be regenerated from a saved run)."""
    rows = [
        f"| config | documents | rebuild | URLs/s | events/s | publish after {report['events']:,} events "
        "| one-document publish | prune | peak RSS | publish / rebuild |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["configs"]:
        p, o = r["publish"], r["one_document_publish"]
        rows.append(
            f"| {r['config']} | {r['documents']:,} | {r['rebuild']['seconds']:.1f} s "
            f"| {r['rebuild']['urls_per_second']:,.0f} | {r['apply']['events_per_second']:,.0f} "
            f"| {p['seconds']:.2f} s ({p['rendered']} rendered, {p['copied']} copied) "
            f"| {o['seconds']:.2f} s ({o['rendered']} rendered, {o['copied']} copied) "
            f"| {r['prune']['seconds']:.2f} s | {r['peak_rss_mib']:.0f} MiB ({r['peak_rss_step']}) "
            f"| {r['publish_vs_rebuild']:.2f} |"
        )
    return "\n".join(rows)


def steps_table(report: dict[str, Any]) -> str:
    """Each step on its own: the whole command's wall and CPU seconds, and its largest process."""
    rows = ["| config | step | wall | CPU | peak RSS (the command's own process) |", "|---|---|---:|---:|---:|"]
    for r in report["configs"]:
        for name, s in r["steps"].items():
            rows.append(
                f"| {r['config']} | {name} | {s['wall_seconds']:.2f} s | {s['cpu_seconds']:.2f} s "
                f"| {s['peak_rss_mib']:.0f} MiB ({s['command_rss_mib']:.0f} MiB) |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=4_000_000)
    ap.add_argument("--events", type=int, default=10_000, help="mixed change events applied after the rebuild")
    ap.add_argument("--config", default="all", help=f"comma-separated, from {', '.join(CONFIGS)}; or all")
    ap.add_argument("--workers", type=int, default=2, help="SITEMAPS_WORKERS of the commands")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--cache", type=Path, help="keep the catalog file here for later runs (default: removed)")
    ap.add_argument("--workdir", type=made_dir, help="where the temporary directory goes (default: the system's)")
    ap.add_argument("--table", type=Path, metavar="JSON", help="print the table of a saved run and exit")
    args = ap.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        print(f"{table(saved)}\n\n{steps_table(saved)}")
        return
    configs = list(CONFIGS) if args.config == "all" else args.config.split(",")
    if unknown := set(configs) - set(CONFIGS):
        ap.error(f"unknown configuration {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    report: dict[str, Any] = {
        "documents": args.documents,
        "events": args.events,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "configs": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.workdir))
    try:
        cache = args.cache or tmp
        cache.mkdir(parents=True, exist_ok=True)
        print(f"catalog of {args.documents:,} documents ...", file=sys.stderr, flush=True)
        source = catalog_file(args.documents, cache)
        events = tmp / "events.jsonl"
        write_events(events, args.events, args.documents)
        for config in configs:
            workdir = tmp / config
            workdir.mkdir()
            try:
                report["configs"].append(run_config(config, args.documents, source, events, workdir, args.workers))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)  # free the disk before the next configuration
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if report["configs"]:
            print(f"{table(report)}\n\n{steps_table(report)}")
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
