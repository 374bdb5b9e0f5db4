"""Change-feed service benchmarks: events applied per second, and event-to-served latency.

    python bench/bench_apply.py                                  # SQLite and PostgreSQL, then latency
    python bench/bench_apply.py --database sqlite --events 200000 --no-latency
    python bench/bench_apply.py --kafka                          # also consume through a Tansu broker
    python bench/bench_apply.py --catalog 4000000 --cache /work/tmp/apply --no-latency  # the catalog built once

Throughput is the service's own loop (incremental/service.py): a source hands batches to the applier, which
applies each with its offsets in one transaction. The source is a JSON-lines file (`--follow`'s source) of
synthetic change events (snapshot/synthetic.py: 85% updates, 10% new documents, 5% deletions) over a manifest
preloaded with a catalog; with --kafka also a Tansu broker (Kafka protocol) started here. Each run is timed
from the first batch read to the last one committed (a Kafka group join before it and the service's shutdown
after it are not the apply path). Latency is `sitemaps run --follow` as a subprocess: single events appended
one at a time, each timed until the local router serves its URL; the target is the publish
interval plus 1 s. Each throughput line also gives the CPU seconds (user + system) of the applying
process, of its parsing workers (started before timing, as a service does once) and of the PostgreSQL backends
serving the run's database: on a shared 2-core machine they are steadier than the rate. PostgreSQL: a scratch
database on 127.0.0.1:5432 (user postgres), dropped afterwards.

On SQLite, each file run is followed by SQLite's own floor for the same events on a copy of the same manifest
made before the run (`--floor`, on by default; bench/bench_layouts.py's `rewrite`): per batch, in one write
transaction with the service's settings, the stored rows of the batch's documents read as apply reads them,
then each rewritten in place by rowid (its version bumped, its size unchanged). Nothing else: no parsing, no
placement, no new rows, no URL owners. It is what a layout that reads and rewrites a row per event costs
before any of this service's work, and the applier's rate is reported as a ratio of it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_layouts import Rewrite, copy_manifest, event_idents, timed
from bench.common import database, write_events
from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.apply import Prepared
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.service import BATCH_SIZE, Service, tune_gc
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.incremental.sources.base import EventBatch, EventSource
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks


def bench_app(workdir: Path, url: str | None) -> App:
    return App(
        ServiceSettings(
            data_dir=workdir / "data",
            database_url=url,
            allowed_hosts=(synthetic.HOST,),
            publish_interval=3600,
            prune_interval=3600,
            http_host="127.0.0.1",
            http_port=0,
        )
    )


def prepared_app(workdir: Path, url: str | None, catalog: int) -> App:
    """A manifest holding `catalog` documents, published (`url` None: the data dir's own SQLite file)."""
    app = bench_app(workdir, url)
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits).rebuild(
        row_chunks("synthetic", synthetic.catalog(catalog))
    )
    app.publisher.publish(full=True)
    return app


class TimedService(Service):
    """The service, noting when its first batch was read (a Kafka group join is not the apply path) and when
    each batch was committed (stopping the service afterwards, up to half a second, is not either)."""

    first: float | None = None
    last: float | None = None

    def _poll(self, timeout: float) -> tuple[EventBatch, Prepared] | None:
        got = super()._poll(timeout)
        if got is not None and self.first is None:
            self.first = time.perf_counter()
        return got

    def apply(self, batch: EventBatch, prepared: Prepared | None = None) -> Counts:
        counts = super().apply(batch, prepared)
        self.last = time.perf_counter()
        return counts


def timed_run(app: App, source: EventSource, offsets: OffsetStore, n: int, batch_size: int) -> float:
    """Seconds from the first batch read to the n-th event applied, through the service loop."""
    service = TimedService(app, source, offsets, Leader(), batch_size)
    app.applier.start_workers()  # once per service process: not the apply path
    t = service.total
    done = service.run(port=0, until=lambda: t.applied + t.stale + t.rejected >= n)
    assert service.first is not None and service.last is not None, done
    assert done.applied + done.stale + done.rejected >= n, done
    return service.last - service.first


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (those still running)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(url: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (their titles name it); none for SQLite."""
    if not url.startswith("postgresql"):
        return []
    name = f" {url.rsplit('/', 1)[1]} ".encode()
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and name in (p / "cmdline").read_bytes().replace(b"\0", b" "):
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


@contextmanager
def cpu_note(app: App, url: str) -> Iterator[list[str]]:
    """CPU seconds of the applying process (and its parsing workers) and of the database server, meanwhile."""
    app.applier.start_workers()
    workers = app.applier.worker_pids()
    server = server_pids(url)
    before = cpu_seconds([os.getpid()]), cpu_seconds(workers), cpu_seconds(server)
    note: list[str] = []
    yield note
    server = sorted(set(server) | set(server_pids(url)))
    main, parsing, db = (
        cpu_seconds([os.getpid()]) - before[0],
        cpu_seconds(workers) - before[1],
        cpu_seconds(server) - before[2],
    )
    note.append(
        f"CPU: applier {main:.1f}s + parsing workers {parsing:.1f}s" + (f" + server {db:.1f}s" if server else "")
    )


@contextmanager
def cached_app(kind: str, workdir: Path, catalog: int, cache: Path | None) -> Iterator[tuple[App, str]]:
    """A fresh copy of the prepared manifest (and its data dir): built here, or copied from `cache`, where the
    first run with that cache leaves it (an SQLite file, or a PostgreSQL template database named after the
    cache). A cache is only valid for the code that built it: delete it (and drop its template) when the schema
    changes."""
    if cache is None:
        with database(kind, workdir) as url:
            yield prepared_app(workdir, url, catalog), url
        return
    import shutil

    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL, fresh_pg_database

    built = cache / f"{kind}-{catalog}"
    template = f"bench_apply_{zlib.crc32(str(built.resolve()).encode()):08x}_{catalog}"
    if not (built / "ready").exists():
        shutil.rmtree(built, ignore_errors=True)
        built.mkdir(parents=True)
        if kind == "sqlite":
            prepared_app(built, f"sqlite:///{built / 'manifest.db'}", catalog).close()
        else:
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{template}"'))
            admin.dispose()
            prepared_app(built, f"postgresql+psycopg://postgres@127.0.0.1:5432/{template}", catalog).close()
        (built / "ready").touch()
    for item in built.iterdir():
        if item.is_dir():
            shutil.copytree(item, workdir / item.name, symlinks=True)
        elif item.name != "ready":
            shutil.copy2(item, workdir / item.name)
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'manifest.db'}"
        yield bench_app(workdir, url), url
        return
    for url in fresh_pg_database(f'TEMPLATE "{template}"'):
        yield bench_app(workdir, url), url


def throughput(
    kind: str, source: str, events: int, catalog: int, batch_size: int, cache: Path | None, floor: bool
) -> None:
    """Apply `events` change events from a file or Kafka to a fresh manifest preloaded with `catalog`; on SQLite
    (`floor`), then time SQLite's own floor for them on a copy of that manifest made before."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-apply-", dir=cache) as tmp,
        cached_app(kind, Path(tmp), catalog, cache) as (app, url),
    ):
        workdir = Path(tmp)
        path = workdir / "events.jsonl"
        write_events(path, events, catalog)
        offsets = OffsetStore(app.manifest)
        floor_db = workdir / "floor.db" if floor and kind == "sqlite" and source == "file" else None
        if floor_db is not None:
            copy_manifest(Path(url.removeprefix("sqlite:///")), floor_db)
        if source == "file":
            feed: AbstractContextManager[EventSource] = nullcontext(FileFollower(path, offsets))
            note = f"(catalog {catalog:,}, batches of {batch_size:,}"
        else:
            feed = kafka_source(offsets, path, batch_size)
            note = "(3 partitions, timed from the first batch read: the group join is not counted"
        with feed as events_source, cpu_note(app, url) as cpu:  # producing to Kafka is not counted either
            seconds = timed_run(app, events_source, offsets, events, batch_size)
        report(f"{kind:<10} {source:<5} -> manifest", events, seconds, f"{note}; {cpu[0]})")
        app.close()
        if floor_db is not None:
            floor_time = timed(floor_db, event_idents(path.read_bytes().splitlines()), batch_size, Rewrite())
            report(
                f"{kind:<10} floor -> manifest",
                events,
                floor_time.seconds,
                f"(SQLite alone: read and rewrite each event's row in place, `bench_layouts.py --layout rewrite`; "
                f"CPU {floor_time.cpu:.1f}s; the applier ran at {floor_time.seconds / seconds:.2f} of it)",
            )


def report(what: str, events: int, seconds: float, note: str = "") -> None:
    print(f"{what}: {events:>8,} events in {seconds:6.2f}s = {events / seconds:>8,.0f}/s  {note}", flush=True)


@contextmanager
def kafka_source(offsets: OffsetStore, path: Path, batch_size: int) -> Iterator[EventSource]:
    """A Tansu broker holding the events on a topic of 3 partitions, and a consumer of it."""
    from sitemap_keeper.incremental.sources.kafka import KafkaConfig, KafkaSource
    from tests.services.kafka import TansuBroker

    with TansuBroker() as broker:
        topic = broker.create_topic(None, 3)
        producer = broker.producer(linger_ms=20, batch_size=256 * 1024)
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            producer.send(topic, value=line, key=f"{obj['section']}/{obj['key']}".encode())
        producer.flush()
        producer.close()
        config = KafkaConfig(broker.bootstrap, topic, f"bench-{topic}", session_timeout=4)
        yield KafkaSource(config, offsets, max_records=batch_size)


def latency(samples: int, interval: float, catalog: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = Path(tmp)
        app = prepared_app(workdir, None, catalog)  # the manifest `sitemaps run` finds in the data dir
        app.close()
        path = workdir / "events.jsonl"
        path.write_bytes(b"")
        env = {
            **os.environ,
            "SITEMAPS_DATA_DIR": str(workdir / "data"),
            "SITEMAPS_HTTP_PORT": "0",
            "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
            "SITEMAPS_PUBLISH_INTERVAL": str(interval),
            "SITEMAPS_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitemap_keeper", "run", "--follow", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
        )
        rnd = random.Random(2)
        waits = []
        try:
            for i in range(samples):
                time.sleep(rnd.uniform(0, interval))
                doc = synthetic.document(catalog + i)
                url = doc["loc"].encode()
                started = time.perf_counter()
                with path.open("ab") as f:
                    f.write(orjson.dumps(doc) + b"\n")
                while not served(workdir / "data", doc["section"], url):
                    time.sleep(0.02)
                waits.append(time.perf_counter() - started)
            first = synthetic.document(0)
            if not served(workdir / "data", first["section"], first["loc"].encode()):
                raise SystemExit("the latency run served a generation without the catalog: wrong manifest")
        finally:
            proc.terminate()
            proc.wait(60)
        waits.sort()
        print(
            f"event -> served (publish interval {interval:g}s, catalog {catalog:,}): "
            f"median {statistics.median(waits):.2f}s, p90 {waits[math.ceil(len(waits) * 0.9) - 1]:.2f}s, "
            f"max {waits[-1]:.2f}s over {samples} events; target <= {interval + 1:g}s",
            flush=True,
        )


def served(data_dir: Path, section: str, url: bytes) -> bool:
    """Whether the live generation (where the local router points) lists the URL in a shard of the section."""
    import gzip

    live = data_dir / "current"
    try:
        names = sorted(p.name for p in live.glob(f"sitemap-{section}-*.xml.gz"))
        return any(url + b"<" in gzip.decompress((live / n).read_bytes()) for n in reversed(names))
    except (FileNotFoundError, OSError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--catalog", type=int, default=200_000, help="documents preloaded before the events")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="as `sitemaps run` (its default)")
    ap.add_argument("--kafka", action="store_true", help="also consume through a Tansu broker")
    ap.add_argument("--cache", type=Path, help="build the catalog's manifest once here and copy it for each run")
    ap.add_argument(
        "--floor", action=argparse.BooleanOptionalAction, default=True, help="SQLite's own floor after each SQLite run"
    )
    ap.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--interval", type=float, default=5.0, help="publish interval of the latency run")
    ap.add_argument("--samples", type=int, default=10)
    args = ap.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    tune_gc()  # as `sitemaps run` does
    for kind in kinds:
        for source in ("file", "kafka") if args.kafka else ("file",):
            throughput(kind, source, args.events, args.catalog, args.batch_size, args.cache, args.floor)
    if args.latency:
        latency(args.samples, args.interval, args.catalog)


if __name__ == "__main__":
    main()
