"""Apply throughput of Debezium change events against the native format's, interleaved.

    python bench/bench_debezium.py                        # SQLite, 100,000 events, 3 rounds
    python bench/bench_debezium.py --database postgresql --events 50000 --rounds 2

The same synthetic change events as bench/bench_apply.py (85% updates, 10% new documents, 5% deletions) are
written twice: as this tool's JSON events, and as the messages Debezium's PostgreSQL connector writes for the
same row changes (table public.<section>, a MicroTimestamp lastmod, images and alternates as JSON columns,
the version as the lsn), with the schema envelope or without it (`--envelope`). Each round applies the native
file, then the Debezium one, to fresh manifests preloaded with the same catalog, through the service loop
(bench_apply.timed_run). Rounds alternate so the shared machine's load falls on both alike; the line to read is
the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_apply import cpu_note, prepared_app, report, timed_run
from bench.common import database, write_events
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.service import tune_gc
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.snapshot import synthetic
from tests.test_cdc_e2e import envelope_schema

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
COLUMNS = [
    {"type": "int64", "optional": False, "field": "id"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "updated_at"},
    {"type": "string", "optional": True, "field": "changefreq"},
    {"type": "double", "optional": True, "field": "priority"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Json", "version": 1, "field": "images"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Json", "version": 1, "field": "alternates"},
    {"type": "boolean", "optional": False, "field": "published"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.time.ZonedTimestamp",
        "version": 1,
        "field": "deleted_at",
    },
]


def mapping_text(host: str = synthetic.HOST) -> str:
    sections = []
    for s in synthetic.SECTIONS:
        sections.append(f"""  {s}:
    table: public.{s}
    key: id
    loc: "https://{host}/{s}/{{id}}"
    lastmod: updated_at
    changefreq: changefreq
    priority: priority
    images: images
    alternates: alternates
    where: "published and deleted_at is null"
    types: {{updated_at: micro_timestamp}}
""")
    return "sections:\n" + "".join(sections)


def schema(section: str) -> dict[str, Any]:
    return envelope_schema(f"bench.public.{section}", COLUMNS)


def debezium_message(event: dict[str, Any], envelope: bool) -> bytes:
    """The message Debezium's PostgreSQL connector writes for the row change behind a native event."""
    section, key, version = event["section"], int(event["key"]), event["version"]
    source = {
        "version": "2.7.0.Final",
        "connector": "postgresql",
        "name": "bench",
        "ts_ms": 1733390000000,
        "snapshot": False,
        "db": "app",
        "sequence": None,
        "schema": "public",
        "table": section,
        "txId": version,
        "lsn": version,
        "xmin": None,
    }
    if event.get("op") == "delete":
        payload: dict[str, Any] = {"before": {"id": key}, "after": None, "source": source, "op": "d"}
    else:
        lastmod = dt.datetime.fromisoformat(event["lastmod"])
        after = {
            "id": key,
            "updated_at": (lastmod - EPOCH) // dt.timedelta(microseconds=1),
            "changefreq": event["changefreq"],
            "priority": event["priority"],
            "images": orjson.dumps(event["images"]).decode() if "images" in event else None,
            "alternates": orjson.dumps(event["alternates"]).decode() if "alternates" in event else None,
            "published": True,
            "deleted_at": None,
        }
        payload = {"before": None, "after": after, "source": source, "op": "u"}
    payload["ts_ms"] = 1733390000100
    return orjson.dumps({"schema": schema(section), "payload": payload} if envelope else payload)


def debezium_lines(native: Path, envelope: bool) -> Iterator[bytes]:
    for line in native.read_bytes().splitlines():
        yield debezium_message(orjson.loads(line), envelope)


def run(kind: str, fmt: str, events: int, catalog: int, batch_size: int, envelope: bool) -> float:
    """Events per second of one run of `fmt` on a fresh manifest preloaded with `catalog`."""
    with tempfile.TemporaryDirectory(prefix="bench-debezium-") as tmp, database(kind, Path(tmp)) as url:
        workdir = Path(tmp)
        app = prepared_app(workdir, url, catalog)
        path = workdir / "events.jsonl"
        write_events(path, events, catalog)
        if fmt == "debezium":
            mapping = workdir / "mapping.yaml"
            mapping.write_text(mapping_text())
            dbz = workdir / "debezium.jsonl"
            dbz.write_bytes(b"".join(line + b"\n" for line in debezium_lines(path, envelope)))
            path = dbz
            app.settings = app.settings.replace(event_format="debezium", mapping=mapping)
        offsets = OffsetStore(app.manifest)
        with cpu_note(app, url) as cpu:
            seconds = timed_run(app, FileFollower(path, offsets), offsets, events, batch_size)
        label = fmt if fmt == "native" else f"debezium ({'envelope' if envelope else 'no envelope'})"
        report(f"{kind:<10} {label:<24}", events, seconds, cpu[0])
        app.close()
        return events / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--events", type=int, default=100_000, help="at most 200,000 on a shared machine")
    ap.add_argument("--catalog", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--envelope",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Debezium messages with the schema envelope (schemas.enable=true)",
    )
    args = ap.parse_args()
    tune_gc()
    ratios = []
    for _ in range(args.rounds):
        native = run(args.database, "native", args.events, args.catalog, args.batch_size, args.envelope)
        dbz = run(args.database, "debezium", args.events, args.catalog, args.batch_size, args.envelope)
        ratios.append(dbz / native)
    print(
        f"debezium / native: {', '.join(f'{r:.0%}' for r in ratios)}; median {statistics.median(ratios):.0%}",
        flush=True,
    )


if __name__ == "__main__":
    main()
