"""Operating the tool the way real teams do (issue 22, defects 4 to 8): each test failed on the code before its fix.

End to end in-process on SQLite and PostgreSQL, what is served read back over HTTP and XSD-validated.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot import owners
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest, url_claims
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.manifest.schema import documents
from sitemap_keeper.snapshot.rebuild import Chunk, Rebuilder, row_chunks
from sitemap_keeper.snapshot.render import IndexEntry, index_xml
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.status import status
from sitemap_keeper.snapshot.verify import VerificationError, check_index
from tests.factories import HOST, doc
from tests.service_helpers import key_of, local_site
from tests.services.kafka import TansuBroker
from tests.support import Model, cli, read_site
from tests.test_crash import served_locally
from tests.test_kafka import kafka_env
from tests.test_publish import served


def make_app(tmp_path: Path, database_url: str, **changes: object) -> App:
    fields: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "base_url": "http://127.0.0.1:8080/sitemaps/",
        "allowed_hosts": (HOST,),
        "max_urls": 100,
        "workers": 2,
        **changes,
    }
    return App(Settings(**fields))  # type: ignore[arg-type]


@pytest.fixture
def small_shards(tmp_path: Path, database_url: str) -> Iterator[App]:
    """Shards of at most 4,096 bytes (SITEMAPS_MAX_BYTES lowered as far as it goes)."""
    a = make_app(tmp_path, database_url, max_bytes=4096)
    yield a
    a.close()


def unmarked(event: dict[str, object]) -> dict[str, object]:
    """The event as sent: without the test's own `_refused` mark."""
    return {k: v for k, v in event.items() if k != "_refused"}


def wire(event: dict[str, object]) -> bytes:
    return orjson.dumps(unmarked(event))


def apply(app: App, model: Model, events: list[dict[str, object]]) -> None:
    counts = app.applier.apply_raw([(f"test:{i}", wire(e)) for i, e in enumerate(events)])
    accepted = [e for e in events if not e.get("_refused")]
    for e in accepted:
        model.event(e)
    assert counts.rejected == len(events) - len(accepted), counts


def too_big(i: int, version: int = 1) -> dict[str, object]:
    """A valid document whose <url> is about 6 KB, over a 4,096-byte shard: the C fast path's shape."""
    images = [{"loc": f"https://{HOST}/i/{n}/" + "a" * 2000} for n in range(3)]
    return {**doc(i, version=version), "images": images, "_refused": True}


# -- 5. a document too big for the shard byte limit ---------------------------------------------------------


def test_a_document_no_shard_can_hold_is_dead_lettered_and_publishes_go_on(small_shards: App) -> None:
    app, model = small_shards, Model()
    docs = [doc(i) for i in range(20)]
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [*docs[:10], unmarked(too_big(100)), *docs[10:]])
    )
    assert (counts.applied, counts.rejected) == (20, 1)
    for d in docs:
        model.event(d)
    assert app.publisher.publish(full=True).generation is not None
    assert served(app) == model.expected()

    apply(app, model, [too_big(101), doc(3, version=2, day=9), too_big(5, version=2)])
    assert app.publisher.publish().generation is not None  # the shard the refused big one would have gone to
    assert served(app) == model.expected()
    apply(app, model, [doc(200)])
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()
    reasons = [letter.reason for letter in app.manifest.dead_letters.all()]
    assert len(reasons) == 3 and all("more than one shard can hold" in r for r in reasons), reasons


# -- 7. internationalised host names --------------------------------------------------------------------------

IDN_LOC = "https://bücher.example/bücher/ü?q=ä"
IDN_PUBLISHED = "https://xn--bcher-kva.example/b%C3%BCcher/%C3%BC?q=%C3%A4"


@pytest.mark.parametrize(
    "allowed", ["bücher.example", "xn--bcher-kva.example", "b%C3%BCcher.example", "BÜCHER.example"]
)
def test_an_idn_host_is_accepted_in_any_form_and_published_in_idna(
    tmp_path: Path, database_url: str, allowed: str
) -> None:
    app, model = make_app(tmp_path, database_url, allowed_hosts=(allowed,)), Model()
    try:
        assert app.settings.rules.allowed_hosts == {"xn--bcher-kva.example"}
        events = [
            {**doc(1), "loc": IDN_LOC},
            {**doc(2), "loc": "https://xn--bcher-kva.example/b/2"},
            {
                **doc(3),
                "loc": "https://b%C3%BCcher.example/b/3",
                "alternates": [{"hreflang": "de", "href": "https://Bücher.example/de/3"}],
            },
        ]
        counts = app.applier.apply_raw([(f"t:{i}", wire(e)) for i, e in enumerate(events)])
        assert (counts.applied, counts.rejected) == (3, 0), app.manifest.dead_letters.all()
        for e, loc in zip(
            events,
            [IDN_PUBLISHED, "https://xn--bcher-kva.example/b/2", "https://xn--bcher-kva.example/b/3"],
            strict=True,
        ):
            model.event({**e, "loc": loc})
        assert app.publisher.publish().generation is not None
        assert served(app) == model.expected()
    finally:
        app.close()


def test_an_idn_base_url_is_in_idna_form_and_its_host_allowed() -> None:
    settings = Settings(base_url="https://bücher.example/sitemaps")
    assert settings.base_url == "https://xn--bcher-kva.example/sitemaps/"
    assert settings.rules.allowed_hosts == {"xn--bcher-kva.example"}


def test_an_invalid_idn_host_is_refused_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a valid internationalised domain name"):
        Settings(allowed_hosts=("b%FFcher.example",))
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", allowed_hosts=("bücher.example",))
    try:
        counts = app.applier.apply_raw([("t", orjson.dumps({**doc(1), "loc": "https://-bücher.example/a"}))])
        assert counts.rejected == 1
        assert "not a valid internationalised domain name" in app.manifest.dead_letters.all()[0].reason
    finally:
        app.close()


# -- 8. an over-long base URL ---------------------------------------------------------------------------------


def test_an_over_long_or_invalid_base_url_is_refused_at_start_up(tmp_path: Path) -> None:
    longest = "https://librer.io/" + "a" * (2048 - 90 - len("https://librer.io/") - 1) + "/"
    assert Settings(base_url=longest).base_url == longest  # a shard of a 64-character section still fits
    for bad, reason in [
        (longest[:-1] + "a/", "base URL is 1959 characters"),
        ("https://librer.io/a b/", "RFC 3986"),
        ("https://librer.io/é%zz/", "RFC 3986"),
        ("https://librer.io:70000/", "RFC 3986"),
        ("https://user:secret@librer.io/", "credentials"),
    ]:
        proc = cli("status", env={"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_BASE_URL": bad}, check=False)
        assert proc.returncode == 2, proc
        assert reason in proc.stderr and "Traceback" not in proc.stderr and "secret" not in proc.stderr, proc.stderr


def test_every_index_is_checked_against_the_schema_before_the_switch() -> None:
    limits = Limits()
    good = IndexEntry("https://librer.io/s/sitemap-books-1.xml.gz", "2024-05-17T10:00:00+00:00")
    check_index("sitemap.xml", index_xml([good]), limits)
    for bad in [
        IndexEntry("https://librer.io/" + "a" * 2031, None),  # 2,049 characters
        IndexEntry("https://librer.io/s/sitemap-books-1.xml.gz", "2024-13-01"),
    ]:
        with pytest.raises(VerificationError, match=r"not valid against the sitemaps\.org index schema"):
            check_index("sitemap.xml", index_xml([good, bad]), limits)


# -- 6. one URL, one document ----------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    a = make_app(tmp_path, database_url)
    yield a
    a.close()


def at(i: int, loc_of: int, version: int = 1, section: str = "books", day: int = 1) -> dict[str, object]:
    """Document `i` at the URL of document `loc_of`."""
    return {**doc(i, version=version, section=section, day=day), "loc": f"https://{HOST}/books/{loc_of}"}


def claims(app: App) -> list[str]:
    """The holders' keys named by the dead letters of second claims, in order."""
    return [
        letter.reason.split("document '")[1].split("'")[0]
        for letter in app.manifest.dead_letters.all()
        if "a URL belongs to one document" in letter.reason
    ]


def test_a_url_belongs_to_one_document_under_apply(app: App) -> None:
    model = Model()
    apply(
        app, model, [doc(1), doc(2), {**at(3, 1), "_refused": True}, {**at(1, 1, section="authors"), "_refused": True}]
    )
    assert claims(app) == ["1", "1"]
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()
    # In one batch: refused while 1 holds it; 1 moves to another URL, which frees it; then 3 takes it, and 1
    # cannot take it back. 3's claims at 1's URL waited: replaced by its version 3, their letters are withdrawn.
    events = [at(3, 1, version=2), at(1, 100, version=2), at(3, 1, version=3), at(1, 1, version=3)]
    counts = app.applier.apply_raw([(f"test:{i}", wire(e)) for i, e in enumerate(events)])
    assert (counts.applied, counts.stale, counts.rejected) == (2, 2, 0), counts
    for e in events[1:3]:
        model.event(e)
    assert claims(app) == ["1", "3"]
    # A deletion frees a URL too; a document keeps its own URL through an update.
    apply(
        app,
        model,
        [
            {"op": "delete", "section": "books", "key": "2", "version": 5},
            at(4, 2),
            at(4, 2, version=2, day=7),
            at(3, 1, version=4, day=8),
        ],
    )
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()
    assert len(app.manifest.dead_letters.all()) == 2


def test_a_url_belongs_to_one_document_under_rebuild_then_apply(app: App) -> None:
    model = Model()
    source = [
        doc(1),
        doc(2),
        {**at(3, 1), "_refused": True},
        doc(5),
        {**at(1, 5, section="authors"), "_refused": True},
        doc(6),
        doc(6, version=2, day=3),
        {**at(7, 6), "_refused": True},  # 6 repeated, same URL
        doc(8),
        at(8, 9, version=2),
        at(9, 8),
    ]  # 8 repeated: moved off its URL, which 9 then takes
    rebuilder = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2)
    counts = rebuilder.rebuild(row_chunks("src", [unmarked(d) for d in source]))
    for d in source:
        if not d.get("_refused"):
            model.event(d)
    assert (counts.applied, counts.stale, counts.rejected) == (6, 2, 3), counts
    assert sorted(claims(app)) == ["1", "5", "6"]
    assert app.publisher.publish(full=True).generation is not None
    assert served(app) == model.expected()
    # The rebuilt documents (packed) hold their URLs against events.
    apply(
        app,
        model,
        [
            {**at(10, 2), "_refused": True},
            {**at(11, 8), "_refused": True},
            {"op": "delete", "section": "books", "key": "1", "version": 9},
            at(12, 1),
        ],
    )
    assert claims(app)[3:] == ["2", "9"]
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()


def url_hashes(app: App) -> dict[str, int | None]:
    """Each documents row's URL hash, by key (one section here)."""
    with app.manifest.read() as conn:
        return {k: h for k, h in conn.execute(select(documents.c.key, documents.c.loc_hash))}


def test_every_live_documents_row_carries_its_urls_hash(app: App) -> None:
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [doc(i) for i in range(1, 6)])
    )
    h = owners.loc_hash
    assert url_hashes(app) == {str(i): h(f"https://{HOST}/books/{i}") for i in range(1, 6)}
    model = Model()
    for i in range(1, 6):
        model.event(doc(i))
    apply(
        app,
        model,
        [
            doc(1, version=2, day=2),  # keeps its URL
            at(2, 20, version=2),  # moves
            {"op": "delete", "section": "books", "key": "3", "version": 2},
            doc(6),
        ],
    )
    assert url_hashes(app) == {
        "1": h(f"https://{HOST}/books/1"),
        "2": h(f"https://{HOST}/books/20"),
        "3": None,  # a tombstone holds no URL
        "4": h(f"https://{HOST}/books/4"),
        "5": h(f"https://{HOST}/books/5"),
        "6": h(f"https://{HOST}/books/6"),
    }
    assert app.publisher.publish(full=True).generation is not None
    assert served(app) == model.expected()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite's trace of the statements run
def test_an_update_that_keeps_its_url_reads_no_claim(app: App) -> None:
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [doc(i) for i in range(1, 4)])
    )
    statements: list[str] = []
    with app.manifest.write() as conn:  # the one connection every write goes through
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.set_trace_callback(statements.append)
    try:

        def claim_reads(events: list[dict[str, object]]) -> int:
            statements.clear()
            app.applier.apply_raw([(f"test:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
            return sum(bool(re.search(r"SELECT .* FROM loc_owners", q)) for q in statements)

        assert claim_reads([doc(1, version=2, day=2), doc(2, version=2, day=3)]) == 0  # packed rows, as rebuilt
        assert claim_reads([doc(1, version=3, day=4)]) == 0  # a row an event wrote
        assert claim_reads([at(2, 30, version=4)]) == 1  # a URL new to its document
        assert claim_reads([doc(9)]) == 1
        assert claim_reads([at(3, 1, version=2)]) == 1  # another document's URL: asked, and refused
        assert claims(app) == ["1"]
    finally:
        with app.manifest.write() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.set_trace_callback(None)


def test_a_manifest_made_before_the_url_hash_column_gets_it_and_keeps_the_rule(
    tmp_path: Path, database_url: str
) -> None:
    app = make_app(tmp_path, database_url)
    model = Model()
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [doc(i) for i in range(1, 4)])
    )
    for i in range(1, 4):
        model.event(doc(i))
    with app.manifest.write() as conn:  # as made before the column
        conn.exec_driver_sql("ALTER TABLE documents DROP COLUMN loc_hash")
    app.close()
    app = make_app(tmp_path, database_url)
    try:
        assert url_hashes(app) == dict.fromkeys(["1", "2", "3"])  # added, empty: loc_owners answers for these
        apply(app, model, [{**at(4, 1), "_refused": True}, doc(2, version=2, day=2), at(3, 30, version=2)])
        assert claims(app) == ["1"]
        apply(app, model, [{**at(5, 2), "_refused": True}, at(6, 3)])  # 3 left its URL: free
        assert claims(app) == ["1", "2"]
        assert url_hashes(app)["2"] == owners.loc_hash(f"https://{HOST}/books/2")
        assert app.publisher.publish(full=True).generation is not None
        assert served(app) == model.expected()
    finally:
        app.close()


def test_a_url_belongs_to_one_document_across_a_kill_at_the_commit(tmp_path: Path, database_url: str) -> None:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(orjson.dumps(doc(1)) + b"\n")
    # Refused while 1 holds the URL; 1 moves off it; 3 takes it; 1 cannot take it back.
    events = [at(2, 1), at(1, 100, version=2), at(3, 1), at(1, 1, version=3)]
    second.write_bytes(b"".join(wire(e) + b"\n" for e in events))
    cli("apply", str(first), env=env)
    killed = cli("apply", str(second), env={**env, "SITEMAPS_KILL_AT": "apply-commit"}, check=False)
    assert killed.returncode == -9, killed
    out = cli("apply", str(second), env=env).stdout
    assert "applied 2, stale 0, rejected 2" in out, out
    cli("publish", env=env)
    model = Model()
    for e in [doc(1), events[1], events[2]]:
        model.event(e)
    manifest = Manifest.open(database_url)
    try:
        assert {loc: lastmod for _s, _k, loc, lastmod in manifest.reader.documents()} == model.expected()
        assert [letter.reason.split("document '")[1][0] for letter in manifest.dead_letters.all()] == ["1", "3"]
    finally:
        manifest.close()
    assert served_locally(tmp_path / "data") == model.expected()


def test_a_url_belongs_to_one_document_under_replay(kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(1)
    events = [
        doc(1),
        at(2, 1),
        doc(3),
        at(1, 3, section="authors"),
        at(4, 4),
        {"op": "delete", "section": "books", "key": "1", "version": 2},
        at(2, 1, version=2),
    ]
    kafka_broker.produce(topic, [wire(e) for e in events], [key_of(e) for e in events])
    env = kafka_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", kafka_broker, topic)
    out = cli("replay", "--exit", env=env).stdout
    # 2's claim waited, replaced by its version 2: stale, its letter withdrawn.
    assert "replayed: applied 5, stale 1, rejected 1" in out, out
    model = Model()
    for e in [doc(1), doc(3), at(4, 4), events[5], events[6]]:
        model.event(e)
    assert local_site(tmp_path / "data") == model.expected()


def url(i: int) -> str:
    return f"https://{HOST}/books/{i}"


def delete(i: int, version: int) -> dict[str, object]:
    return {"op": "delete", "section": "books", "key": str(i), "version": version}


def locs(app: App) -> dict[str, str]:
    """Each live document's URL, by key (every document here is a book)."""
    return {key: loc for _s, key, loc, _m in app.manifest.reader.documents()}


def waiting(app: App) -> int:
    with app.manifest.engine.connect() as conn:
        return url_claims.waiting_count(conn)


def batches(app: App, *events: list[dict[str, object]]) -> Counts:
    total = Counts()
    for batch in events:
        total.add(app.applier.apply_raw([(f"t:{i}", wire(e)) for i, e in enumerate(batch)]))
    return total


@pytest.mark.parametrize("split", [False, True], ids=["one-batch", "two-batches"])
def test_a_new_keys_upsert_before_the_old_keys_delete_takes_the_url(app: App, split: bool) -> None:
    """A change of a row's key from a change feed: the new key's upsert may come first (another partition).
    Refused while the old key holds the URL, it waits; the delete frees the URL and it is applied."""
    batches(app, [doc(1)])
    claim, gone = at(2, 1, day=5), delete(1, 2)
    counts = batches(app, [claim], [gone]) if split else batches(app, [claim, gone])
    assert (counts.applied, counts.rejected) == (2, 0), counts  # the refusal's letter is withdrawn
    assert locs(app) == {"2": url(1)}
    assert app.manifest.dead_letters.all() == [] and waiting(app) == 0
    assert app.publisher.publish().generation is not None
    assert served(app) == {url(1): claim["lastmod"]}


def test_a_refused_claim_waits_with_its_dead_letter_until_the_url_is_freed(app: App) -> None:
    batches(app, [doc(1)])
    counts = batches(app, [at(2, 1)])
    assert counts.rejected == 1 and claims(app) == ["1"] and waiting(app) == 1
    assert status(app.manifest, app.store, app.router, app.settings.base_url)["waiting_url_claims"] == 1
    assert locs(app) == {"1": url(1)}
    counts = batches(app, [delete(1, 2)])
    assert (counts.applied, counts.rejected) == (2, -1), counts  # the letter written before is withdrawn
    assert locs(app) == {"2": url(1)} and claims(app) == [] and waiting(app) == 0


def test_a_waiting_claim_replaced_by_a_newer_event_of_its_key_is_never_applied(app: App) -> None:
    batches(app, [doc(1), doc(5), doc(6)])
    # Refused at 1's URL, then moved to a free one: when 1's URL is freed, 2 stays where it went.
    batches(app, [at(2, 1)], [at(2, 100, version=2)], [delete(1, 2)])
    assert locs(app) == {"2": url(100), "5": url(5), "6": url(6)}
    assert claims(app) == [] and waiting(app) == 0  # replaced: its letter withdrawn
    # Refused at 5's URL, then at 6's: the newer claim replaces the older (and stands for its letter too).
    batches(app, [at(4, 5)], [at(4, 6, version=2)])
    assert waiting(app) == 1 and claims(app) == ["5", "6"]
    batches(app, [delete(5, 2)])
    assert "4" not in locs(app) and waiting(app) == 1
    batches(app, [delete(6, 2)])
    assert locs(app) == {"2": url(100), "4": url(6)} and claims(app) == [] and waiting(app) == 0
    # In one batch: refused, then deleted; the URL freed after: nothing comes back.
    batches(app, [at(7, 100), delete(7, 2), delete(2, 3)])
    assert locs(app) == {"4": url(6)} and waiting(app) == 0


@pytest.mark.parametrize("split", [False, True], ids=["one-batch", "batches"])
def test_of_two_waiting_claims_the_oldest_takes_the_url_and_the_other_waits_on(app: App, split: bool) -> None:
    batches(app, [doc(1)])
    events = [at(2, 1), at(3, 1), delete(1, 2)]
    batches(app, *([[e] for e in events] if split else [events]))
    assert locs(app) == {"2": url(1)} and waiting(app) == 1
    assert claims(app) == ["1"]  # 3's letter stands while it waits
    batches(app, [delete(2, 2)])
    assert locs(app) == {"3": url(1)} and claims(app) == [] and waiting(app) == 0


def test_a_rebuild_ends_every_wait(app: App) -> None:
    batches(app, [doc(1)], [at(2, 1)])
    assert waiting(app) == 1
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(row_chunks("src", [doc(1)]))
    assert waiting(app) == 0
    batches(app, [delete(1, 2)])
    assert locs(app) == {}


# -- also made consistent ---------------------------------------------------------------------------------------


def test_a_rebuild_refuses_a_line_over_1_mib_as_apply_does(app: App) -> None:
    big = orjson.dumps({**doc(2), "pad": "x" * (1024 * 1024)})
    lines = [orjson.dumps(doc(1)), big, orjson.dumps(doc(3))]
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        [Chunk("src.jsonl", 1, b"\n".join(lines))]
    )
    assert (counts.applied, counts.rejected) == (2, 1), counts
    applied = app.applier.apply_raw([("events.jsonl:1", big)])
    assert applied.rejected == 1
    reasons = [letter.reason for letter in app.manifest.dead_letters.all()]
    assert all(f"{len(big)} bytes, at most 1048576 allowed" in r for r in reasons), reasons
    assert [letter.source for letter in app.manifest.dead_letters.all()] == ["src.jsonl:2", "events.jsonl:1"]


def test_an_index_lastmod_is_the_newest_exactly_even_a_microsecond_apart_in_far_years(app: App) -> None:
    model = Model()
    # Their float timestamps are equal; the newer is the second in the shard's key order.
    older, newer = "9999-12-31T23:59:59.999998+00:00", "9999-12-31T23:59:59.999999+00:00"
    apply(app, model, [{**doc(1), "lastmod": older}, {**doc(2), "lastmod": newer}])
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()  # read_site checks each index lastmod is its shard's newest, exactly


def test_an_index_is_split_where_it_would_pass_the_byte_limit(tmp_path: Path, database_url: str) -> None:
    """With SITEMAPS_MAX_BYTES lowered, many small shards made a section index (and the root) bigger than the
    limit: `check_index` refused it, and every publish failed."""
    app, model = make_app(tmp_path, database_url, max_bytes=4096, max_urls=1), Model()
    try:
        apply(app, model, [doc(i) for i in range(60)])  # 60 shards of one URL: 60 entries, about 6.5 KB
        gen = app.publisher.publish().generation
        assert gen is not None
        names = sorted(app.store.list(gen))
        roots = tuple(n for n in names if re.fullmatch(r"sitemap\.\d+\.xml", n))
        assert len(roots) >= 2 and "sitemap-books.2.xml" in names, names
        site = read_site(lambda name: app.store.get(gen, name), app.settings.base_url, roots)
        assert site.urls == model.expected()
        assert all(len(app.store.get(gen, name)) <= 4096 for name in names if name.endswith(".xml"))
    finally:
        app.close()


class OneUrlModel:
    """The rule, kept independently: per document its last accepted (loc, lastmod, version); a URL taken only
    while no other live document is at it; an event not newer than the document's version is stale. A refused
    claim waits (dead-lettered, and standing for the letters of the older claims of its key it replaces); an
    event of its key applied replaces a waiting claim of a version not newer, withdrawing its letters; at the
    end of each batch the waiting claims of free URLs are applied, oldest first, and their letters withdrawn."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.waiting: list[tuple[tuple[str, str], dict[str, Any], int]] = []  # (ident, event, letters), oldest first
        self.refused = 0  # dead letters standing

    def batch(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            self.event(ev)
        for _round in range(8):
            moved = False
            for entry in [e for e in self.waiting if self.holder(e[1]["loc"]) in (None, e[0])]:
                if entry in self.waiting and self.holder(entry[1]["loc"]) in (None, entry[0]):
                    self.waiting.remove(entry)
                    self.refused -= entry[2]
                    if entry[1]["version"] > self.versions.get(entry[0], -1):
                        self.take(entry[0], entry[1])
                        moved = True
            if not moved:
                return

    def holder(self, loc: str) -> tuple[str, str] | None:
        return next((other for other, (at, _m) in self.live.items() if at == loc), None)

    def event(self, ev: dict[str, Any]) -> None:
        ident = (ev["section"], ev["key"])
        if ev["version"] <= self.versions.get(ident, -1):
            return
        if ev.get("op") != "delete" and self.holder(ev["loc"]) not in (None, ident):
            self.refused += 1
            replaced = [e for e in self.waiting if e[0] == ident and e[1]["version"] <= ev["version"]]
            self.waiting = [e for e in self.waiting if e not in replaced]
            if all(e[1]["loc"] != ev["loc"] for e in self.waiting if e[0] == ident):
                self.waiting.append((ident, ev, 1 + sum(e[2] for e in replaced)))
            return
        self.take(ident, ev)

    def take(self, ident: tuple[str, str], ev: dict[str, Any]) -> None:
        replaced = [e for e in self.waiting if e[0] == ident and e[1]["version"] <= ev["version"]]
        self.waiting = [e for e in self.waiting if e not in replaced]
        self.refused -= sum(e[2] for e in replaced)
        self.versions[ident] = ev["version"]
        if ev.get("op") == "delete":
            self.live.pop(ident, None)
        else:
            self.live[ident] = (ev["loc"], ev["lastmod"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("index_max", [owners.INDEX_MAX, 0], ids=["indexed", "unindexed"])
def test_random_claims_of_a_few_urls_follow_the_rule(
    app: App, seed: int, index_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with a batch asking the database per document for claims waiting (as with over INDEX_MAX)."""
    monkeypatch.setattr(owners, "INDEX_MAX", index_max)
    rnd = random.Random(seed)
    model, events = OneUrlModel(), list[dict[str, Any]]()
    for clock in range(1, 81):
        ident = (rnd.choice(["books", "authors"]), str(rnd.randrange(4)))
        version = clock if rnd.random() > 0.1 else rnd.randrange(1, clock + 1)  # now and then an old one
        if rnd.random() < 0.2:
            events.append({"op": "delete", "section": ident[0], "key": ident[1], "version": version})
        else:
            events.append(
                {
                    "section": ident[0],
                    "key": ident[1],
                    "loc": f"https://{HOST}/u/{rnd.randrange(5)}",
                    "lastmod": f"2024-01-{1 + clock % 28:02d}T00:00:00+00:00",
                    "version": version,
                }
            )
    i = 0
    while i < len(events):  # batches of random sizes, each its own transaction
        n = rnd.randrange(1, 12)
        app.applier.apply_raw([(f"t:{j}", wire(e)) for j, e in enumerate(events[i : i + n], i)])
        model.batch(events[i : i + n])
        i += n
    assert {(s, k): (loc, lastmod) for s, k, loc, lastmod in app.manifest.reader.documents()} == model.live
    assert len(claims(app)) == model.refused > 0
    if model.live:
        assert app.publisher.publish().generation is not None
        assert served(app) == dict(model.live.values())
