"""The generation diff after many random events and after one, against the publisher's own time (local store).

    python bench/bench_diff.py --documents 4000000 --cache /var/tmp/sitemaps-bench
    python bench/bench_diff.py --documents 4000000 --before /path/to/other/venv/bin/python   # A/B, interleaved

A catalog of --documents (written once into --cache) is rebuilt into a fresh SQLite manifest and local store.
Then, --rounds times, for each interpreter (this one, and --before's, installed from other code; their order
alternates from round to round): --events random events (snapshot/synthetic.changes) are applied and
`sitemaps publish` runs, then one changed document is applied and published. Every publish records the
generation diff before the command exits, so the command's wall time against the publisher's own time (which
ends at the switch) is what the diff adds. After each publish, each interpreter times the diff of that same
pair of generations on its own (in a process of its own, without start-up), and the two must give the same
changes, URL by URL (a SHA-256 of them). Prints a table per interpreter: medians over the rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def time_diff(data_dir: Path, database_url: str, workers: int, repeat: int) -> dict[str, Any]:
    """The diff of the live generation against its base, timed in this process (the code `python` runs)."""
    from sitemap_keeper.snapshot import diff
    from sitemap_keeper.snapshot.manifest import Manifest
    from sitemap_keeper.snapshot.routers.local import LocalRouter
    from sitemap_keeper.snapshot.stores.local import LocalStore

    manifest, store = Manifest.open(database_url), LocalStore(data_dir)
    new = LocalRouter(data_dir).current()
    gen = manifest.generations.get(new) if new else None
    assert gen is not None and gen.base_id is not None, "no published generation with a base"
    options = {"workers": workers} if "workers" in inspect.signature(diff.compare).parameters else {}
    seconds: list[float] = []
    digest, count = "", 0
    while len(seconds) < repeat and sum(seconds) < 2.0:  # the best of a few, unless each takes long
        started = time.perf_counter()
        h, count = hashlib.sha256(), 0
        for change in diff.compare(manifest, store, gen.base_id, new, **options).changes():
            h.update(repr(dataclasses.astuple(change)).encode())
            count += 1
        seconds.append(time.perf_counter() - started)
        digest = h.hexdigest()
    return {"seconds": min(seconds), "changes": count, "sha256": digest, "shards": gen.rendered}


def events_file(path: Path, n: int, documents: int, seed: int, first_version: int) -> Path:
    """n random events over the catalog, their versions from first_version up (newer than any applied)."""
    from sitemap_keeper.snapshot import synthetic

    with path.open("wb") as f:
        for raw in synthetic.changes(n, documents, seed=seed):
            event = orjson.loads(raw)
            event["version"] += first_version
            f.write(orjson.dumps(event) + b"\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=4_000_000)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="SITEMAPS_WORKERS of the commands and the timed diffs")
    ap.add_argument("--before", help="another interpreter (a venv of other code) to measure in the same run")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sitemaps-bench")
    ap.add_argument("--workdir", type=Path, help="where the temporary directory goes (default: the system's)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--time-diff", nargs=2, metavar=("DATA_DIR", "DATABASE_URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_diff:  # run by the benchmark under each interpreter
        print(json.dumps(time_diff(Path(args.time_diff[0]), args.time_diff[1], args.workers, 3)))
        return

    from bench.bench_scale import PUBLISHED, parsed
    from bench.common import catalog_file, cli
    from sitemap_keeper.snapshot import synthetic

    pythons = {"this": sys.executable, **({"before": args.before} if args.before else {})}
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        try:
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            ap.error(f"argument --workdir: cannot make directory {args.workdir}: {exc.strerror or exc}")
    catalog = catalog_file(args.documents, args.cache)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in pythons}
    with tempfile.TemporaryDirectory(prefix="bench-diff-", dir=args.workdir) as tmp:
        work = Path(tmp)
        data, url, logs = work / "data", f"sqlite:///{work / 'manifest.db'}", work / "logs"
        env = {
            **os.environ,
            "SITEMAPS_DATA_DIR": str(data),
            "SITEMAPS_DATABASE_URL": url,
            "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
            "SITEMAPS_LOG_LEVEL": "WARNING",
            "SITEMAPS_WORKERS": str(args.workers),
        }
        step = cli(["rebuild", "--source", str(catalog)], env, logs)
        print(f"rebuild: {step.wall:.1f}s", file=sys.stderr, flush=True)
        version = 10
        for r in range(args.rounds):
            for label in list(pythons) if r % 2 == 0 else list(reversed(pythons)):
                figures: dict[str, Any] = {"round": r}
                for kind in ("events", "one"):
                    if kind == "events":
                        source = events_file(
                            work / "events.jsonl",
                            args.events,
                            args.documents,
                            seed=100 + version,
                            first_version=version,
                        )
                    else:
                        source = work / "one.jsonl"
                        day = version // (args.events + 10)  # another lastmod each time
                        source.write_bytes(
                            orjson.dumps(
                                {**synthetic.document(args.documents // 3, version=version, day=day), "op": "upsert"}
                            )
                            + b"\n"
                        )
                    version += args.events + 10
                    cli(["apply", str(source)], env, logs)
                    step = cli(["publish"], env, logs, python=pythons[label])
                    own = parsed(PUBLISHED, step)
                    timed = {}
                    for other, python in pythons.items():
                        out = subprocess.run(
                            [python, __file__, "--workers", str(args.workers), "--time-diff", str(data), url],
                            env=env,
                            check=True,
                            capture_output=True,
                            text=True,
                        )
                        timed[other] = json.loads(out.stdout)
                    if len({t["sha256"] for t in timed.values()}) != 1:
                        raise SystemExit(f"the diffs differ: {timed}")
                    figures[kind] = {
                        "publisher_seconds": own["seconds"],
                        "command_seconds": step.wall,
                        "ratio": step.wall / own["seconds"],
                        "cpu_seconds": step.cpu,
                        "peak_rss_mib": step.peak_rss_mib,
                        "rendered": own["rendered"],
                        "changes": timed[label]["changes"],
                        "diff_seconds": {other: t["seconds"] for other, t in timed.items()},
                    }
                    print(
                        f"  round {r} {label} {kind}: publisher {own['seconds']:.2f}s, command {step.wall:.2f}s "
                        f"(x{step.wall / own['seconds']:.2f}), diff "
                        + ", ".join(f"{o} {t['seconds']:.3f}s" for o, t in timed.items())
                        + f", {timed[label]['changes']} changes",
                        file=sys.stderr,
                        flush=True,
                    )
                    cli(["prune", "--keep", "2"], env, logs)
                results[label].append(figures)
    report = {
        "documents": args.documents,
        "events": args.events,
        "workers": args.workers,
        "rounds": args.rounds,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


def table(report: dict[str, Any]) -> str:
    """Medians over the rounds, one line per interpreter that published."""
    lines = [
        "| code | publisher after events | command | command / publisher | diff after events "
        "(this, before) | one-document: publisher | command | diff (this, before) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rounds in report["results"].items():
        e = _medians([r["events"] for r in rounds])
        o = _medians([r["one"] for r in rounds])
        lines.append(
            f"| {label} | {e['publisher_seconds']:.2f} s | {e['command_seconds']:.2f} s | {e['ratio']:.2f} | "
            f"{e['diffs']} | {o['publisher_seconds']:.2f} s | {o['command_seconds']:.2f} s | {o['diffs']} |"
        )
    return "\n".join(lines)


def _medians(figures: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: statistics.median(f[k] for f in figures) for k in ("publisher_seconds", "command_seconds", "ratio")
    }
    out["diffs"] = ", ".join(
        f"{statistics.median(f['diff_seconds'][code] for f in figures):.3f} s" for code in figures[0]["diff_seconds"]
    )
    return out


if __name__ == "__main__":
    main()
