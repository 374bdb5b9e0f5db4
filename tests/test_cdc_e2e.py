"""From PostgreSQL tables to live sitemaps with no glue: `rebuild --mapping`, then the tables' changes as Debezium
messages (built here from each change's before and after rows, as the PostgreSQL connector writes them) on one
Tansu topic per table, applied by `sitemaps run --format debezium`; the served site must equal a SELECT of the
rows that pass the filter, URL for URL with lastmods, also across kill -9s."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from sitemap_keeper.snapshot.manifest import Manifest
from tests.conftest import fresh_pg_database
from tests.service_helpers import ServiceProcess, letters, local_site, service_env, stored_offsets
from tests.services.kafka import TansuBroker
from tests.services.ports import wait_for
from tests.support import cli

BOOKS = 3000
AUTHORS = 200
EPOCH = dt.datetime(1970, 1, 1)
MAPPING = """
sections:
  books:
    table: public.books
    key: id
    loc: "https://librer.io/books/{slug}"
    lastmod: updated_at
    where: "published and deleted_at is null"
  authors:
    table: public.authors
    key: id
    loc: "https://librer.io/authors/{handle}"
    lastmod: updated_on
    where: "active = true"
    types: {updated_on: date}   # the authors connector writes no schema envelope
"""
BOOK_FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "string", "optional": False, "field": "slug"},
    {
        "type": "int64",
        "optional": False,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "field": "updated_at",
    },
    {"type": "boolean", "optional": False, "field": "published"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.time.ZonedTimestamp",
        "version": 1,
        "field": "deleted_at",
    },
]


def book_value_schema(prefix: str) -> dict[str, Any]:
    return envelope_schema(prefix, BOOK_FIELDS)


def envelope_schema(prefix: str, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """The value schema Debezium's PostgreSQL connector writes for a table of `columns` (topic `prefix`)."""
    row = {"type": "struct", "fields": columns, "optional": True, "name": f"{prefix}.Value"}
    source = [
        {"type": t, "optional": o, "field": n}
        for t, o, n in (
            ("string", False, "version"),
            ("string", False, "connector"),
            ("string", False, "name"),
            ("int64", False, "ts_ms"),
            ("boolean", True, "snapshot"),
            ("string", False, "db"),
            ("string", True, "sequence"),
            ("string", False, "schema"),
            ("string", False, "table"),
            ("int64", True, "txId"),
            ("int64", True, "lsn"),
            ("int64", True, "xmin"),
        )
    ]
    return {
        "type": "struct",
        "optional": False,
        "name": f"{prefix}.Envelope",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {
                "type": "struct",
                "fields": source,
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


class Feed:
    """Changes to the application tables, each turned into the messages Debezium's PostgreSQL connector writes
    for it (REPLICA IDENTITY DEFAULT: an update's before is null, a delete's holds the primary key)."""

    def __init__(self, engine: Engine, prefix: str, seed: int) -> None:
        self.engine = engine
        self.prefix = prefix
        self.rnd = random.Random(seed)
        self.books_schema = book_value_schema(f"{prefix}.public.books")
        self.next_id = 10_000_000 + seed * 100_000

    def topic(self, table: str) -> str:
        return f"{self.prefix}.public.{table}"

    def message(
        self, conn: Connection, table: str, op: str, key: int, before: Any, after: Any
    ) -> tuple[str, bytes, bytes]:
        lsn = int(conn.execute(text("SELECT pg_current_wal_insert_lsn() - '0/0'")).scalar_one())
        encode = book_row if table == "books" else author_row
        source = {
            "version": "2.7.0.Final",
            "connector": "postgresql",
            "name": self.prefix,
            "ts_ms": int(time.time() * 1000),
            "snapshot": False,
            "db": "app",
            "schema": "public",
            "table": table,
            "txId": 1,
            "lsn": lsn,
            "xmin": None,
        }
        payload = {
            "before": before if before is None or op == "d" else encode(before),
            "after": encode(after) if after is not None else None,
            "source": source,
            "op": op,
            "ts_ms": int(time.time() * 1000),
        }
        key_payload = {"id": key}
        if table == "books":  # this connector writes the schema envelope; the authors' one does not
            value: Any = {"schema": self.books_schema, "payload": payload}
            key_doc: Any = {
                "schema": {
                    "type": "struct",
                    "name": f"{self.topic(table)}.Key",
                    "optional": False,
                    "fields": [{"type": "int32", "optional": False, "field": "id"}],
                },
                "payload": key_payload,
            }
        else:
            value, key_doc = payload, key_payload
        return self.topic(table), orjson.dumps(key_doc), orjson.dumps(value)

    def snapshot(self) -> list[tuple[str, bytes, bytes | None]]:
        """The connector's initial snapshot: a read (`r`) of every row, all at the snapshot's position."""
        out: list[tuple[str, bytes, bytes | None]] = []
        with self.engine.begin() as conn:
            for table in ("books", "authors"):
                for row in conn.execute(text(f"SELECT * FROM {table}")).mappings():
                    out.append(self.message(conn, table, "r", row["id"], None, dict(row)))
        return out

    def change(self) -> list[tuple[str, bytes, bytes | None]]:
        """One random change, committed; its messages in the order Debezium writes them."""
        table = "books" if self.rnd.random() < 0.85 else "authors"
        with self.engine.begin() as conn:
            ids = conn.execute(text(f"SELECT id FROM {table} ORDER BY random() LIMIT 1")).scalars().all()
            kind = self.rnd.choice(["touch", "touch", "flip", "flip", "insert", "delete", "rekey", "reslug"])
            if not ids or kind == "insert":
                return self._insert(conn, table)
            return self._update(conn, table, ids[0], kind)

    def _insert(self, conn: Connection, table: str) -> list[tuple[str, bytes, bytes | None]]:
        self.next_id += 1
        row = new_row(table, self.next_id, self.rnd)
        cols = ", ".join(row)
        conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row)
        return [self.message(conn, table, "c", row["id"], None, row)]

    def _update(self, conn: Connection, table: str, key: int, kind: str) -> list[tuple[str, bytes, bytes | None]]:
        if kind == "delete":
            conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": key})
            return [self.message(conn, table, "d", key, {"id": key}, None), (self.topic(table), b"", None)]
        if kind == "rekey":  # Debezium: a delete of the old key, its tombstone, a create of the new one
            self.next_id += 1
            after = (
                conn.execute(
                    text(f"UPDATE {table} SET id = :new WHERE id = :id RETURNING *"), {"new": self.next_id, "id": key}
                )
                .mappings()
                .one()
            )
            return [
                self.message(conn, table, "d", key, {"id": key}, None),
                (self.topic(table), b"", None),
                self.message(conn, table, "c", self.next_id, None, dict(after)),
            ]
        sets = mutation(table, kind, self.rnd)
        assign = ", ".join(f"{c} = :{c}" for c in sets)
        after = (
            conn.execute(text(f"UPDATE {table} SET {assign} WHERE id = :id RETURNING *"), {**sets, "id": key})
            .mappings()
            .one()
        )
        return [self.message(conn, table, "u", key, None, dict(after))]


def new_row(table: str, i: int, rnd: random.Random) -> dict[str, Any]:
    if table == "books":
        slug = f"book-{i}" if rnd.random() < 0.8 else f"l'été {i}/ñ"
        return {
            "id": i,
            "slug": slug,
            "updated_at": stamp(rnd),
            "published": rnd.random() < 0.85,
            "deleted_at": stamp(rnd).replace(tzinfo=dt.UTC) if rnd.random() < 0.1 else None,
        }
    return {"id": i, "handle": f"author-{i}", "updated_on": stamp(rnd).date(), "active": rnd.random() < 0.9}


def mutation(table: str, kind: str, rnd: random.Random) -> dict[str, Any]:
    if table == "authors":
        return {"updated_on": stamp(rnd).date(), "active": rnd.random() < 0.8 if kind == "flip" else True}
    if kind == "flip":
        return rnd.choice(
            [
                {"published": rnd.random() < 0.5},
                {"deleted_at": stamp(rnd).replace(tzinfo=dt.UTC) if rnd.random() < 0.5 else None},
            ]
        )
    if kind == "reslug":
        return {"slug": f"renamed {rnd.randrange(10**9)}", "updated_at": stamp(rnd)}
    return {"updated_at": stamp(rnd)}


def stamp(rnd: random.Random) -> dt.datetime:
    return dt.datetime(2020, 1, 1) + dt.timedelta(microseconds=rnd.randrange(5 * 365 * 86400 * 10**6))


def book_row(row: dict[str, Any]) -> dict[str, Any]:
    """A books row as the connector encodes it: timestamp as MicroTimestamp, timestamptz as ZonedTimestamp."""
    deleted = row["deleted_at"]
    micros = (row["updated_at"] - EPOCH) // dt.timedelta(microseconds=1)
    return {
        "id": row["id"],
        "slug": row["slug"],
        "updated_at": micros,
        "published": row["published"],
        "deleted_at": deleted.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if deleted else None,
    }


def author_row(row: dict[str, Any]) -> dict[str, Any]:
    """An authors row: date as io.debezium.time.Date (days since the epoch)."""
    return {
        "id": row["id"],
        "handle": row["handle"],
        "updated_on": (row["updated_on"] - EPOCH.date()).days,
        "active": row["active"],
    }


def expected(engine: Engine) -> dict[str, str | None]:
    """The ground truth: a SELECT of the rows that pass the filter, as URLs and lastmods."""
    with engine.connect() as conn:
        books = conn.execute(text("SELECT slug, updated_at FROM books WHERE published AND deleted_at IS NULL"))
        authors = conn.execute(text("SELECT handle, updated_on FROM authors WHERE active"))
        site: dict[str, str | None] = {
            f"https://librer.io/books/{quote(slug, safe='')}": u.replace(tzinfo=dt.UTC).isoformat() for slug, u in books
        }
        site.update({f"https://librer.io/authors/{quote(h, safe='')}": d.isoformat() for h, d in authors})
    return site


@pytest.fixture
def app_engine() -> Iterator[Engine]:
    for url in fresh_pg_database():
        engine = create_engine(url)
        rnd = random.Random(1)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE books (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, "
                    "updated_at TIMESTAMP(6) NOT NULL, published BOOLEAN NOT NULL, deleted_at TIMESTAMPTZ)"
                )
            )
            conn.execute(
                text(
                    "CREATE TABLE authors (id INTEGER PRIMARY KEY, handle TEXT NOT NULL UNIQUE, "
                    "updated_on DATE NOT NULL, active BOOLEAN NOT NULL)"
                )
            )
            conn.execute(
                text("INSERT INTO books VALUES (:id, :slug, :updated_at, :published, :deleted_at)"),
                [new_row("books", i, rnd) for i in range(1, BOOKS + 1)],
            )
            conn.execute(
                text("INSERT INTO authors VALUES (:id, :handle, :updated_on, :active)"),
                [new_row("authors", i, rnd) for i in range(1, AUTHORS + 1)],
            )
        yield engine
        engine.dispose()


def produce(
    broker: TansuBroker, messages: list[tuple[str, bytes, bytes | None]], ends: dict[tuple[str, int], int]
) -> None:
    producer = broker.producer(linger_ms=5)
    try:
        futures = [producer.send(t, key=k, value=v) for t, k, v in messages]
        producer.flush(timeout=60)
        for f in futures:
            md = f.get(timeout=30)
            ends[(md.topic, md.partition)] = max(ends.get((md.topic, md.partition), 0), md.offset + 1)
    finally:
        producer.close(timeout=10)


def caught_up(manifest: Manifest, ends: dict[tuple[str, int], int]) -> bool:
    return all(stored_offsets(manifest, t).get(p) == o for (t, p), o in ends.items())


def changes(feed: Feed, n: int) -> list[tuple[str, bytes, bytes | None]]:
    return [m for _ in range(n) for m in feed.change()]


def test_from_postgresql_tables_to_live_sitemaps(
    kafka_broker: TansuBroker, app_engine: Engine, tmp_path: Path, database_url: str
) -> None:
    prefix = f"e2e{random.randrange(10**8)}"
    feed = Feed(app_engine, prefix, seed=7)
    kafka_broker.create_topic(feed.topic("books"), 2)
    kafka_broker.create_topic(feed.topic("authors"), 1)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    env = service_env(
        tmp_path,
        database_url,
        SITEMAPS_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
        SITEMAPS_KAFKA_TOPICS=rf"{prefix}\.public\..*",
        SITEMAPS_KAFKA_GROUP=f"g-{prefix}",
        SITEMAPS_EVENT_FORMAT="debezium",
        SITEMAPS_MAPPING=str(mapping),
        SITEMAPS_BATCH_SIZE="200",
    )
    data = tmp_path / "data"

    # The rebuild reads the tables through the same mapping.
    out = cli(
        "rebuild", "--source-database-url", str(app_engine.url.render_as_string(hide_password=False)), env=env
    ).stdout
    truth = expected(app_engine)
    assert f"applied {len(truth)}, stale 0, rejected 0" in out
    assert local_site(data) == truth

    # Then the change feed: every kind of change, both tables, both message shapes.
    ends: dict[tuple[str, int], int] = {}
    produce(kafka_broker, changes(feed, 400), ends)
    manifest = Manifest.open(database_url)
    log = tmp_path / "service.log"
    svc = ServiceProcess(["run"], env, log)
    try:
        wait_for(lambda: caught_up(manifest, ends), 90, "every change applied")
        truth = expected(app_engine)
        wait_for(lambda: local_site(data) == truth, 30, "the served site to equal the SELECT")
        wait_for(lambda: svc.get("/readyz") == (200, "ok\n"), 15, "ready")
        assert svc.metrics()["sitemaps_consumer_lag"] == 0
    finally:
        svc.kill()
    assert letters(manifest) == []

    # Kill -9 mid-stream, twice, while the table keeps changing; a restart ends equal all the same.
    rnd = random.Random(9)
    producer_done, kills_done = threading.Event(), threading.Event()

    def keep_changing() -> None:  # at least 6 rounds, and on until both kills are done (40 rounds at most)
        for n in range(40):
            if n >= 6 and kills_done.is_set():
                break
            produce(kafka_broker, changes(feed, 150), ends)
            time.sleep(0.5)
        producer_done.set()

    thread = threading.Thread(target=keep_changing, daemon=True)
    thread.start()
    for _ in range(2):
        svc = ServiceProcess(["run"], env, log)
        try:
            wait_for(lambda: svc.metrics()["sitemaps_batches_total"] > 0, 30, "a batch")  # noqa: B023
            time.sleep(rnd.uniform(0.2, 1.5))
        finally:
            svc.kill()
    kills_done.set()
    thread.join(120)
    assert producer_done.is_set()
    svc = ServiceProcess(["run"], env, log)
    try:
        wait_for(lambda: caught_up(manifest, ends), 120, "every change applied after the kills")
        truth = expected(app_engine)
        wait_for(lambda: local_site(data) == truth, 30, "the served site to equal the SELECT after the kills")
        assert svc.stop()[0] == 0
    finally:
        svc.kill()
        manifest.close()
    assert letters(manifest) == []


def test_replay_of_the_debezium_topics(kafka_broker: TansuBroker, app_engine: Engine, tmp_path: Path) -> None:
    """The connector's snapshot reads and the changes after them are the whole site: `replay` rebuilds it from
    every topic of the pattern."""
    prefix = f"rp{random.randrange(10**8)}"
    feed = Feed(app_engine, prefix, seed=3)
    kafka_broker.create_topic(feed.topic("books"), 2)
    kafka_broker.create_topic(feed.topic("authors"), 1)
    ends: dict[tuple[str, int], int] = {}
    produce(kafka_broker, feed.snapshot() + changes(feed, 300), ends)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    env = service_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'manifest.db'}",
        SITEMAPS_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
        SITEMAPS_KAFKA_TOPICS=f"{feed.topic('books')},{feed.topic('authors')}",
    )
    out = cli("replay", "--exit", "--format", "debezium", "--mapping", str(mapping), env=env).stdout
    assert "replayed: applied" in out and "rejected 0" in out
    assert local_site(tmp_path / "data") == expected(app_engine)
