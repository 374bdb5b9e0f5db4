"""Debezium change events (tests/fixtures/debezium: the PostgreSQL and MySQL connectors' documented shapes, with
and without the schema envelope) applied through the mapping to a real manifest."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import pickle
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, select, text

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.incremental.debezium import ENVELOPES, DebeziumParser, Shipped, position
from sitemap_keeper.snapshot.document import InvalidDocument, Rules
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.manifest.schema import documents
from sitemap_keeper.snapshot.mapping import load_mapping, parse_mapping
from sitemap_keeper.snapshot.rebuild_input import mapping_rows
from sitemap_keeper.snapshot.render import document_row
from sitemap_keeper.snapshot.settings import Settings
from tests.conftest import fresh_pg_database
from tests.service_helpers import letters, local_site
from tests.support import cli

FIXTURES = Path(__file__).parent / "fixtures" / "debezium"
RULES = Rules(frozenset({"librer.io"}))
CONNECTORS = ["postgresql", "mysql"]


def fixture(connector: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = orjson.loads((FIXTURES / f"{connector}.json").read_bytes())
    return data


def without_envelope(msg: dict[str, Any]) -> dict[str, Any]:
    """The same message as the JSON converter writes it with schemas.enable=false: the payloads alone."""
    out = dict(msg)
    for part in ("key", "value"):
        if out[part] is not None:
            out[part] = out[part]["payload"]
    return out


def raws(msgs: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """(label, value) as the Kafka source hands them over: a tombstone's null value as empty bytes."""
    return [
        (f"kafka:{m['topic']}/0@{i}", orjson.dumps(m["value"]) if m["value"] is not None else b"")
        for i, m in enumerate(msgs)
    ]


def epoch(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def row_of(connector: str, msgs: list[dict[str, Any]], key: int) -> dict[str, Any]:
    """The last `after` row of `key` in the fixture."""
    rows = [
        m["value"]["payload"]["after"]
        for m in msgs
        if m["value"] and m["value"]["payload"].get("after") and m["value"]["payload"]["after"]["id"] == key
    ]
    return rows[-1]  # type: ignore[no-any-return]


def expected_site(connector: str, msgs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """What the fixture leaves published: 5 (a snapshot read, updated) and 30 (3 after its key change); 1 was
    unpublished, 2 deleted, 4 created soft-deleted. Lastmods from the epoch integers by another route."""
    scale = 1_000_000 if connector == "postgresql" else 1000
    out = {}
    for key in (5, 30):
        row = row_of(connector, msgs, key)
        assert row["slug"] in ("café society", "third")
        loc = {"café society": "https://librer.io/books/caf%C3%A9%20society", "third": "https://librer.io/books/third"}[
            row["slug"]
        ]
        out[str(key)] = (loc, epoch(row["updated_at"] / scale))
    return out


@pytest.fixture
def manifest(database_url: str) -> Iterator[Manifest]:
    m = Manifest.open(database_url)
    yield m
    m.close()


def applier(manifest: Manifest, connector: str) -> Applier:
    parser = DebeziumParser(load_mapping(FIXTURES / f"{connector}-mapping.yaml"))
    return Applier(manifest, RULES, Settings().limits, workers=0, parser=parser)


def site(manifest: Manifest) -> dict[str, tuple[str, str]]:
    d = documents.c
    with manifest.engine.connect() as conn:
        rows = conn.execute(select(d.key, d.loc, d.lastmod).where(d.loc.is_not(None)))
        return {k: (loc, lastmod) for k, loc, lastmod in rows}


def versions(manifest: Manifest) -> dict[str, int | None]:
    with manifest.engine.connect() as conn:
        return dict(conn.execute(select(documents.c.key, documents.c.version)).all())  # type: ignore[arg-type]


@pytest.mark.parametrize("envelope", [True, False], ids=["schemas", "no-schemas"])
@pytest.mark.parametrize("connector", CONNECTORS)
def test_the_documented_events_leave_the_rows_that_pass_the_filter(
    manifest: Manifest, connector: str, envelope: bool
) -> None:
    msgs = fixture(connector)
    sent = msgs if envelope else [without_envelope(m) for m in msgs]
    app = applier(manifest, connector)
    counts = app.apply_raw(raws(sent))
    assert site(manifest) == expected_site(connector, msgs)
    # The truncate, and only it, is dead-lettered, with its reason; tombstones are skipped, not refused.
    got = letters(manifest)
    assert len(got) == 1 and "truncate of " in got[0][1] and "rebuild" in got[0][1]
    assert orjson.loads(got[0][2])["op" if not envelope else "payload"]
    assert counts.rejected == 1
    # Deleted, unpublished, soft-deleted and moved keys are tombstones carrying the position they went at.
    v = versions(manifest)
    assert set(v) == {"1", "2", "3", "4", "5", "30"}
    last = {
        m["value"]["payload"]["after"]["id"]
        if m["value"]["payload"].get("after")
        else m["value"]["payload"]["before"]["id"]: position(m["value"]["payload"]["source"])
        if m["value"]["payload"]["op"] != "r"
        else 0
        for m in msgs
        if m["value"] and m["value"]["payload"]["op"] != "t"
    }
    assert v == {str(k): pos for k, pos in last.items()}


@pytest.mark.parametrize("connector", CONNECTORS)
def test_a_redelivered_or_older_event_is_stale(manifest: Manifest, connector: str) -> None:
    msgs = fixture(connector)
    app = applier(manifest, connector)
    first = app.apply_raw(raws(msgs))
    again = app.apply_raw(raws(msgs))
    assert again.applied == 0 and again.stale == first.applied, (first, again)
    assert site(manifest) == expected_site(connector, msgs)
    # An older update of 2 after its deletion, a snapshot read of 1 after its unpublishing: both stale.
    older = [
        m
        for m in msgs
        if m["value"] and m["value"]["payload"]["op"] in ("u", "r") and m["key"]["payload"]["id"] in (1, 2)
    ]
    assert len(older) == 3 and app.apply_raw(raws(older)) == Counts(stale=3)
    assert site(manifest) == expected_site(connector, msgs)


def test_a_change_logged_before_the_snapshot_position_is_not_stale(manifest: Manifest) -> None:
    """PostgreSQL: a transaction running when the snapshot starts commits after it, so the snapshot did not see
    its change, whose lsn is below the snapshot's all the same. It must be applied over the snapshot read."""
    msgs = fixture("postgresql")
    read = next(m for m in msgs if m["value"] and m["value"]["payload"]["op"] == "r")
    late = copy.deepcopy(read)
    late["value"]["payload"].update(op="u", before=None)
    late["value"]["payload"]["after"]["updated_at"] += 10**6
    late["value"]["payload"]["source"].update(snapshot=False, lsn=read["value"]["payload"]["source"]["lsn"] - 500)
    app = applier(manifest, "postgresql")
    assert app.apply_raw(raws([read, late])) == Counts(applied=2)
    ((_loc, lastmod),) = site(manifest).values()
    assert lastmod == epoch(late["value"]["payload"]["after"]["updated_at"] / 10**6)


def test_an_update_that_changes_the_key_columns_deletes_the_old_document(manifest: Manifest) -> None:
    """MySQL writes whole before images (binlog_row_image=FULL); a mapping keyed by slug sees its key change
    in an update (Debezium splits only primary key changes into a delete and a create)."""
    mapping = parse_mapping((FIXTURES / "mysql-mapping.yaml").read_text().replace("key: id", "key: slug"))
    app = Applier(manifest, RULES, Settings().limits, workers=0, parser=DebeziumParser(mapping))
    msgs = fixture("mysql")
    create = next(m for m in msgs if m["value"] and m["value"]["payload"]["op"] == "c")
    update = copy.deepcopy(next(m for m in msgs if m["value"] and m["value"]["payload"]["op"] == "u"))
    update["value"]["payload"]["after"]["slug"] = "second-edition"
    counts = app.apply_raw(raws([create, update]))
    assert counts == Counts(applied=3)
    assert set(site(manifest)) == {"second-edition"}
    assert site(manifest)["second-edition"][0] == "https://librer.io/books/second-edition"


def bad(msg: dict[str, Any], change: Any) -> dict[str, Any]:
    out = copy.deepcopy(msg)
    change(out["value"]["payload"])
    return out


def _drop_key(p: dict[str, Any]) -> None:
    del p["after"]["id"]


def _drop_slug(p: dict[str, Any]) -> None:
    del p["after"]["slug"]


def _bool_lastmod(p: dict[str, Any]) -> None:
    p["after"]["updated_at"] = True


def _other_table(p: dict[str, Any]) -> None:
    p["source"]["table"] = "authors"


def _delete_without_before(p: dict[str, Any]) -> None:
    p["op"], p["before"], p["after"] = "d", None, None


def _float_slug(p: dict[str, Any]) -> None:
    p["after"]["slug"] = 1.5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_other_table, "unknown table public.authors"),
        (_drop_key, "without the key columns id"),
        (_delete_without_before, "without the key columns id in before"),
        (_drop_slug, "loc column slug is missing"),
        (_bool_lastmod, "not a valid MicroTimestamp"),
        (_float_slug, "loc column slug has a value of the wrong type: float"),
    ],
)
def test_bad_events_are_dead_lettered_with_the_reason(manifest: Manifest, change: Any, reason: str) -> None:
    msgs = fixture("postgresql")
    create = next(m for m in msgs if m["value"] and m["value"]["payload"]["op"] == "c")
    app = applier(manifest, "postgresql")
    assert app.apply_raw(raws([bad(create, change)])) == Counts(rejected=1)
    (got,) = letters(manifest)
    assert reason in got[1], got[1]


def test_an_epoch_integer_without_schema_or_declared_type_is_refused(manifest: Manifest) -> None:
    untyped = (FIXTURES / "postgresql-mapping.yaml").read_text().split("    types:")[0]
    app = Applier(manifest, RULES, Settings().limits, workers=0, parser=DebeziumParser(parse_mapping(untyped)))
    msgs = fixture("postgresql")
    create = without_envelope(next(m for m in msgs if m["value"] and m["value"]["payload"]["op"] == "c"))
    assert app.apply_raw(raws([create])) == Counts(rejected=1)
    assert "declare its type in the mapping" in letters(manifest)[0][1]


def test_temporal_encodings() -> None:
    """Debezium's documented examples: TIMESTAMP '2018-06-20 15:13:16.945104' is MicroTimestamp
    1529507596945104; MySQL DATETIME '2018-06-20 06:37:03' is Timestamp 1529476623000."""
    mapping = parse_mapping("""
sections:
  s:
    table: public.t
    key: id
    loc: "https://librer.io/{id}"
    lastmod: m
    types: {m: micro_timestamp}
""")
    sec = mapping.sections[0]
    cases = [
        ("io.debezium.time.MicroTimestamp", 1529507596945104, "2018-06-20T15:13:16.945104+00:00"),
        ("io.debezium.time.Timestamp", 1529476623000, "2018-06-20T06:37:03+00:00"),
        ("io.debezium.time.NanoTimestamp", 1529507596945104123, "2018-06-20T15:13:16.945104+00:00"),
        ("io.debezium.time.ZonedTimestamp", "2018-06-20T13:13:16.945104Z", "2018-06-20T13:13:16.945104+00:00"),
        ("io.debezium.time.Date", 17702, "2018-06-20"),
    ]
    for name, value, want in cases:
        row = DebeziumParser._decoded(sec, {"id": 1, "m": value}, {"m": (name, None)})
        assert sec.document(row)["lastmod"] == want, name
    with pytest.raises(InvalidDocument, match="not a valid Date"):
        DebeziumParser._decoded(sec, {"id": 1, "m": "x"}, {"m": ("io.debezium.time.Date", None)})


def test_an_envelope_in_any_layout_decodes_alike() -> None:
    """The compact envelope (JsonConverter's own layout) is split and its schema decoded once; any other layout
    of the same JSON, or a broken message, goes through the whole decoding."""
    untyped = (FIXTURES / "postgresql-mapping.yaml").read_text().split("    types:")[0]  # the schema says it
    parser = DebeziumParser(parse_mapping(untyped))
    msgs = [m for m in fixture("postgresql") if m["value"] and m["value"]["payload"]["op"] != "t"]
    compact = [orjson.dumps(m["value"]) for m in msgs]
    spaced = [json.dumps(m["value"], indent=1).encode() for m in msgs]
    reordered = [orjson.dumps({"payload": m["value"]["payload"], "schema": m["value"]["schema"]}) for m in msgs]
    ENVELOPES.__init__()
    got = [parser(RULES, raws_) for raws_ in (compact, spaced, reordered)]
    assert got[0].ops and got[0].ops == got[1].ops == got[2].ops and not got[0].rejects
    assert len(ENVELOPES.types) == 1
    broken = compact[0][:-2] + b"}"
    assert "not valid JSON" in parser(RULES, [broken]).rejects[0][1]


ALL_COLUMNS = """
sections:
  books:
    table: public.books
    key: [shop, id]
    loc: "https://librer.io/{shop}/{path:raw}"
    lastmod: changed
    changefreq: freq
    priority: prio
    images: covers
    alternates: translations
    where: "live and status != 'draft'"
"""


def test_rebuild_and_events_render_a_row_alike(tmp_path: Path) -> None:
    """Every optional column, read by the rebuild's query from PostgreSQL and, as the connector encodes the
    same row (text[] as an array, jsonb as io.debezium.data.Json text, numeric as Decimal, timestamptz as
    ZonedTimestamp), by the decoder: the same rendered documents."""
    mapping = parse_mapping(ALL_COLUMNS)
    for url in fresh_pg_database():
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE books (shop TEXT, id INTEGER, path TEXT, changed TIMESTAMPTZ, "
                    "freq TEXT, prio NUMERIC(3,2), covers TEXT[], translations JSONB, live BOOLEAN, "
                    "status TEXT, PRIMARY KEY (shop, id))"
                )
            )
            conn.execute(text("SET TIME ZONE 'Europe/Paris'"))
            conn.execute(
                text(
                    "INSERT INTO books VALUES ('main', 1, 'a/b-é', '2024-06-01 10:30:00.5+02', 'daily', 0.75, "
                    "ARRAY['https://cdn.librer.io/1.jpg'], '{\"de\": \"https://librer.io/de/1\"}', true, 'ok'), "
                    "('main', 2, 'x', NULL, NULL, NULL, NULL, NULL, true, 'draft'), "
                    "('é/2', 3, 'y', '2024-06-02 00:00:00+00', 'weekly', 1, '{}', '[]', true, NULL)"
                )
            )
            sql_rows = conn.execute(text("SELECT * FROM books")).mappings().all()
        engine.dispose()
        rebuilt = sorted(document_row(r, RULES) for r in mapping_rows(url, mapping))
    assert [r[1] for r in rebuilt] == ["main/1"]  # 2 is a draft; 3's NULL status fails != 'draft', as in SQL

    def encode(row: Any) -> dict[str, Any]:
        prio = row["prio"]
        unscaled = int(prio * 100) if prio is not None else None
        return {
            **row,
            "changed": row["changed"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if row["changed"] else None,
            "prio": base64.b64encode(unscaled.to_bytes(2, "big", signed=True)).decode()
            if unscaled is not None
            else None,
            "translations": orjson.dumps(row["translations"]).decode() if row["translations"] is not None else None,
        }

    assert all(isinstance(r["prio"], Decimal | None) for r in sql_rows)
    fields = [
        {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "field": "changed"},
        {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2", "connect.decimal.precision": "3"},
            "field": "prio",
        },
        {"type": "string", "optional": True, "name": "io.debezium.data.Json", "field": "translations"},
    ]
    schema = {"type": "struct", "fields": [{"type": "struct", "fields": fields, "optional": True, "field": "after"}]}
    source = {"connector": "postgresql", "schema": "public", "table": "books", "lsn": 100}
    messages = [
        orjson.dumps({"schema": schema, "payload": {"op": "r", "before": None, "after": encode(r), "source": source}})
        for r in sql_rows
    ]
    parsed = DebeziumParser(mapping)(RULES, messages)
    assert not parsed.rejects
    upserts = sorted(op for op in parsed.ops if len(op) > 3)
    deletes = sorted(op[1] for op in parsed.ops if len(op) == 3)
    assert deletes == ["%C3%A9%2F2/3", "main/2"]
    assert [r[:2] + r[3:] for r in upserts] == [r[:2] + r[3:] for r in rebuilt]  # all but the version
    xml = upserts[0][-1]
    assert "<loc>https://librer.io/main/a/b-%C3%A9</loc>" in xml and "<lastmod>2024-06-01T08:30:00.500000+00:00" in xml
    assert "<priority>0.8</priority>" in xml and "https://cdn.librer.io/1.jpg" in xml and 'hreflang="de"' in xml


def test_sitemaps_apply_reads_debezium_lines(tmp_path: Path) -> None:
    """`sitemaps apply --format debezium`: the messages one per line (a tombstone as `null`), then a publish."""
    msgs = fixture("postgresql")
    lines = tmp_path / "changes.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(m["value"]) + b"\n" for m in msgs))
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_ALLOWED_HOSTS": "librer.io",
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_EVENT_FORMAT": "debezium",
        "SITEMAPS_MAPPING": str(FIXTURES / "postgresql-mapping.yaml"),
    }
    out = cli("apply", str(lines), env=env).stdout
    assert "rejected 1" in out and "stale 0" in out
    cli("publish", env=env)
    want = dict(expected_site("postgresql", msgs).values())
    assert local_site(tmp_path / "data") == want


TWO_TABLES = """
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
    loc: "https://librer.io/authors/{slug}"
    lastmod: updated_at
"""
INSTANT = dt.datetime(2018, 6, 20, 15, 13, 16, tzinfo=dt.UTC)
# updated_at's encoding per schema: books' column changes (a new schema version of the same topic), authors'
# is another again. Decoded by the wrong schema, a value would be read a thousand times too large or small.
ENCODINGS = {
    "books-v1": ("io.debezium.time.MicroTimestamp", 1_000_000),
    "books-v2": ("io.debezium.time.Timestamp", 1_000),
    "authors": ("io.debezium.time.NanoTimestamp", 1_000_000_000),
}


def interleaved_messages() -> tuple[list[bytes], dict[str, tuple[str, str]], list[str]]:
    """Compact envelopes of two tables, one changing its schema mid-stream, interleaved with a tombstone, a
    message without envelope, an envelope in another layout and a broken one: (messages, the site they leave
    (key -> loc, lastmod), the reasons of the rejected ones)."""
    create = next(m["value"] for m in fixture("postgresql") if m["value"] and m["value"]["payload"]["op"] == "c")

    def schema(kind: str) -> dict[str, Any]:
        table, name = kind.split("-")[0], ENCODINGS[kind][0]
        text_ = orjson.dumps(create["schema"]).replace(b".public.books.", f".public.{table}.".encode())
        out: dict[str, Any] = orjson.loads(text_)
        for part in out["fields"]:
            for f in part.get("fields") or ():
                if f.get("field") == "updated_at" and part["field"] in ("before", "after"):
                    f["name"] = name
        return out

    def payload(kind: str, key: int, seconds: int, lsn: int) -> dict[str, Any]:
        out = copy.deepcopy(create["payload"])
        out["after"].update(id=key, slug=f"{kind}-{key}", updated_at=seconds * ENCODINGS[kind][1])
        out["source"].update(table=kind.split("-")[0], lsn=lsn)
        return out

    site: dict[str, tuple[str, str]] = {}
    messages: list[bytes] = []
    for n, (kind, key) in enumerate(
        [
            ("books-v1", 1),
            ("authors", 101),
            ("books-v1", 2),
            ("books-v2", 3),
            ("authors", 102),
            ("books-v2", 1),
            ("books-v1", 4),
            ("authors", 101),
        ]
    ):
        seconds = int(INSTANT.timestamp()) + n
        messages.append(orjson.dumps({"schema": schema(kind), "payload": payload(kind, key, seconds, 1000 + n)}))
        section = kind.split("-")[0]
        site[str(key)] = (f"https://librer.io/{section}/{kind}-{key}", epoch(seconds))
    v2 = schema("books-v2")
    messages[3:3] = [
        b"",  # a tombstone
        orjson.dumps({"payload": payload("books-v2", 5, 1, 2000), "schema": v2}),  # another layout
        orjson.dumps({"schema": v2, "payload": payload("books-v2", 6, 2, 2001)})[:-40] + b"}",  # broken
        orjson.dumps(payload("books-v1", 7, 3, 2002)),  # no envelope: the mapping has no types for it
    ]
    site["5"] = ("https://librer.io/books/books-v2-5", epoch(1))
    return messages, site, ["not valid JSON", "declare its type in the mapping"]


def test_a_chunk_sent_to_a_worker_decodes_as_the_messages_one_by_one() -> None:
    """The applying process sends the workers each envelope's schema once per chunk and the payloads; a worker
    remembers schemas across chunks. Tables interleaved, a table's schema changing mid-stream, messages of
    other layouts among them: each decodes as it does alone, in a process that has seen no schema before."""
    parser = DebeziumParser(parse_mapping(TWO_TABLES))
    messages, _site, _reasons = interleaved_messages()
    alone = []
    for raw in messages:
        ENVELOPES.__init__()  # type: ignore[misc]
        alone.append(parser(RULES, [raw]))
    ENVELOPES.__init__()  # type: ignore[misc]
    shipped = Shipped.of(messages)
    assert list(shipped) == messages and shipped[2:4] == messages[2:4]
    assert len(shipped.starts) == 3  # books v1, authors, books v2 (the other layouts go whole)
    # Sent whole: the tombstone, the other layout and the message without envelope (the broken one is cut).
    assert [i for i, k in enumerate(shipped.which) if not k] == [3, 4, 6]
    sent = pickle.dumps(shipped)
    for _ in range(2):  # a fresh worker, then one that remembers the schemas
        got = parser(RULES, pickle.loads(sent))
        assert got.ops == [op for p in alone for op in p.ops]
        assert got.origins == [i for i, p in enumerate(alone) for _op in p.ops]
        assert got.rejects == [(i, reason) for i, p in enumerate(alone) for _j, reason in p.rejects]
    ENVELOPES.__init__()  # type: ignore[misc]


@pytest.mark.parametrize("workers", [0, 2])
def test_interleaved_tables_and_a_schema_change_apply_alike_in_workers(manifest: Manifest, workers: int) -> None:
    messages, want, reasons = interleaved_messages()
    app = Applier(
        manifest,
        RULES,
        Settings().limits,
        workers=workers,
        parallel_min=1,
        parse_chunk=3,
        parser=DebeziumParser(parse_mapping(TWO_TABLES)),
    )
    try:
        counts = app.apply_raw([(f"kafka:t/0@{i}", raw) for i, raw in enumerate(messages)])
    finally:
        app.close()
    assert site(manifest) == want
    got = letters(manifest)
    assert len(got) == 2
    assert all(want_reason in reason for (_s, reason, _raw), want_reason in zip(got, reasons, strict=True))
    assert [raw for _s, _r, raw in got] == [messages[5], messages[6]]  # as they came, not as sent to a worker
    assert counts.rejected == 2
