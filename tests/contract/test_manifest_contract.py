"""The manifest contract (the `Manifest` facade of snapshot/manifest), one behaviour a test, run against every
database it supports: SQLite and PostgreSQL (the `database_url` fixture). Two `Manifest` objects on one
database stand for two processes or replicas. What one database does alone (PRAGMAs, connection caches,
collations) is tested beside it (tests/test_connections.py, tests/test_key_order.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text

from sitemap_keeper.incremental.apply import Applier
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import FileRecord
from tests.conftest import fresh_pg_database
from tests.factories import HOST, doc

G1, G2, G3 = "20240101-000000-000-0001", "20240102-000000-000-0002", "20240103-000000-000-0003"
SHARD = FileRecord(
    "sitemap-books-1.xml.gz",
    1200,
    "0" * 32,
    url_count=40,
    lastmod="2024-05-01T10:00:00+00:00",
    lastmod_ts=1714557600.0,
    section="books",
    shard_no=1,
    revision=3,
)
INDEX = FileRecord("sitemap.xml", 300, "1" * 32)


@pytest.fixture(scope="module")
def postgresql_database() -> Iterator[str]:
    yield from fresh_pg_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty manifest database: a new SQLite file, or the module's PostgreSQL database emptied (creating a
    database for each test would take longer than the tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'manifest.db'}"
    url: str = request.getfixturevalue("postgresql_database")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def manifest(database_url: str) -> Iterator[Manifest]:
    m = Manifest.open(database_url)
    yield m
    m.close()


@pytest.fixture
def other(database_url: str, manifest: Manifest) -> Iterator[Manifest]:
    """The same manifest opened again: another process, another replica."""
    m = Manifest.open(database_url)
    yield m
    m.close()


def test_a_begun_generation_is_building_on_its_base(manifest: Manifest) -> None:
    manifest.generations.begin(G2, G1)
    gen = manifest.generations.get(G2)
    assert gen is not None and (gen.state, gen.base_id, gen.published_at) == ("building", G1, None)


def test_an_unknown_generation_is_none(manifest: Manifest) -> None:
    assert manifest.generations.get(G1) is None
    assert manifest.generations.files(G1) == {}
    assert manifest.generations.latest_id() is None


def test_recorded_files_read_back_field_for_field(manifest: Manifest) -> None:
    manifest.generations.begin(G1, None)
    manifest.generations.record(G1, [SHARD, INDEX], rendered=1, copied=0)
    assert manifest.generations.files(G1) == {SHARD.name: SHARD, INDEX.name: INDEX}


def test_a_recorded_generation_is_ready_with_its_counts(manifest: Manifest) -> None:
    manifest.generations.begin(G1, None)
    manifest.generations.record(G1, [SHARD, INDEX], rendered=1, copied=4)
    gen = manifest.generations.get(G1)
    assert gen is not None
    assert (gen.state, gen.url_count, gen.file_count, gen.rendered, gen.copied) == ("ready", 40, 2, 1, 4)


def test_recording_again_replaces_the_files(manifest: Manifest) -> None:
    manifest.generations.begin(G1, None)
    manifest.generations.record(G1, [SHARD, INDEX], rendered=1, copied=0)
    manifest.generations.record(G1, [INDEX], rendered=0, copied=0)  # a retried publish step
    assert manifest.generations.files(G1) == {INDEX.name: INDEX}


def test_one_generation_is_live_the_one_before_is_retired(manifest: Manifest) -> None:
    for gen_id in (G1, G2):
        manifest.generations.begin(gen_id, None)
        manifest.generations.set_state(gen_id, "live")
    states = {g.id: g.state for g in manifest.generations.all()}
    assert states == {G1: "retired", G2: "live"}
    live = manifest.generations.get(G2)
    assert live is not None and live.published_at is not None


def test_generations_are_listed_in_id_order_and_the_latest_is_the_highest(manifest: Manifest) -> None:
    for gen_id in (G2, G3, G1):
        manifest.generations.begin(gen_id, None)
    assert [g.id for g in manifest.generations.all()] == [G1, G2, G3]
    assert manifest.generations.latest_id() == G3


def test_what_one_writes_another_reads(manifest: Manifest, other: Manifest) -> None:
    manifest.generations.begin(G1, None)
    manifest.generations.record(G1, [INDEX], rendered=0, copied=0)
    assert other.generations.files(G1) == {INDEX.name: INDEX}


def test_a_failed_write_transaction_leaves_nothing(manifest: Manifest) -> None:
    def fail(_conn: object) -> None:  # in the transaction, after the documents' rows
        raise KeyError("offsets")

    with pytest.raises(KeyError):
        Applier(manifest, Rules(frozenset({HOST})), Limits()).apply_raw([("t", orjson.dumps(doc(1)))], extra=fail)
    assert manifest.reader.url_count() == 0 and manifest.dead_letters.count() == 0


def test_the_publish_lock_is_held_by_one_at_a_time(manifest: Manifest, other: Manifest) -> None:
    with (
        manifest.locks.publish(),
        pytest.raises(RuntimeError, match="another process is publishing"),
        other.locks.publish(),
    ):
        pass
    with other.locks.publish():  # released
        pass


def test_the_rebuild_lock_is_held_by_one_at_a_time_and_seen_by_all(manifest: Manifest, other: Manifest) -> None:
    assert not other.locks.rebuild_running()
    with manifest.locks.rebuild():
        assert other.locks.rebuild_running()
        with pytest.raises(RuntimeError, match="another rebuild is running"), other.locks.rebuild():
            pass
    assert not other.locks.rebuild_running()


def test_the_two_locks_are_independent(manifest: Manifest, other: Manifest) -> None:
    with manifest.locks.publish(), other.locks.rebuild():
        assert manifest.locks.rebuild_running()


def test_refused_input_is_kept_as_a_dead_letter(manifest: Manifest, other: Manifest) -> None:
    applier = Applier(manifest, Rules(frozenset({HOST})), Limits())
    counts = applier.apply_raw(
        [
            ("topic:0:7", b"{not json"),
            ("topic:0:8", orjson.dumps(doc(1))),
            ("topic:0:9", orjson.dumps(doc(2, loc="https://elsewhere.example/2"))),
        ]
    )
    assert (counts.applied, counts.rejected) == (1, 2)
    letters = other.dead_letters.all()
    assert [(d.source, d.raw) for d in letters] == [
        ("topic:0:7", b"{not json"),
        ("topic:0:9", orjson.dumps(doc(2, loc="https://elsewhere.example/2"))),
    ]
    assert all(d.reason for d in letters)
    assert other.dead_letters.count() == 2
    assert [d.source for d in other.dead_letters.all(limit=1)] == ["topic:0:7"]


def test_opening_again_keeps_what_is_there(database_url: str, manifest: Manifest) -> None:
    manifest.generations.begin(G1, None)
    again = Manifest.open(database_url)
    try:
        assert again.generations.latest_id() == G1
    finally:
        again.close()


def test_an_existing_manifest_opens_read_only(database_url: str, manifest: Manifest) -> None:
    manifest.generations.begin(G1, None)
    reader = Manifest.open_existing(database_url)
    try:
        assert reader.generations.latest_id() == G1
        with pytest.raises(RuntimeError, match="only reads"), reader.write():
            pass
    finally:
        reader.close()
