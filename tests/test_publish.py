"""Publishing end to end in-process, on SQLite and PostgreSQL: what is served equals the ground truth."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot import naming
from sitemap_keeper.snapshot.manifest.schema import documents
from sitemap_keeper.snapshot.rebuild import Rebuilder, SourceShrank, row_chunks
from sitemap_keeper.snapshot.refusals import EmptyManifest, ForeignLive, SiteShrank
from sitemap_keeper.snapshot.serve import make_server, serve_in_thread
from sitemap_keeper.snapshot.settings import Settings
from tests.factories import HOST, doc
from tests.support import Model, cli, http_fetch, read_site


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        base_url="http://127.0.0.1:8080/sitemaps/",
        allowed_hosts=(HOST,),
        max_urls=100,
        workers=2,
    )
    a = App(settings)
    yield a
    a.close()


def served(app: App) -> dict[str, str | None]:
    server = make_server(app.store, app.router, app.settings.base_path, "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        base = f"http://127.0.0.1:{server.server_port}{app.settings.base_path}"
        site = read_site(http_fetch(base), app.settings.base_url)
        return site.urls
    finally:
        server.shutdown()
        server.server_close()


def apply(app: App, model: Model, events: list[dict[str, object]]) -> None:
    app.applier.apply_raw([(f"test:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
    for e in events:
        model.event(e)


def test_rebuild_apply_publish_rollback_prune(app: App) -> None:
    model = Model()
    docs = [doc(i, section=("books", "authors")[i % 2]) for i in range(450)]
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(row_chunks("src", docs))
    assert (counts.applied, counts.stale, counts.rejected) == (450, 0, 0)
    for d in docs:
        model.event(d)
    first = app.publisher.publish(full=True)
    assert first.generation is not None and first.rendered == 6  # 225 per section, 100 per shard
    assert served(app) == model.expected()

    again = app.publisher.publish()
    assert again.generation is None and "nothing to publish" in again.message

    apply(app, model, [doc(7, version=2, section="authors", day=9)])
    second = app.publisher.publish()
    assert (second.rendered, second.copied) == (1, 5)
    assert served(app) == model.expected()

    apply(
        app,
        model,
        [
            {"op": "delete", "section": "books", "key": "0", "version": 5},
            doc(1000, section="books"),
            doc(7, version=1, section="authors", day=20),
        ],
    )  # last one stale
    third = app.publisher.publish()
    assert third.generation is not None
    assert served(app) == model.expected()

    previous = served(app)
    from sitemap_keeper.snapshot.rollback import rollback

    before, target = rollback(app.manifest, app.store, app.router)
    assert (before, target) == (third.generation, second.generation)
    assert served(app) != previous

    from sitemap_keeper.snapshot.prune import prune

    result = prune(app.manifest, app.store, app.router, keep=2, grace=0)
    assert second.generation in result.kept and first.generation in result.deleted
    assert app.router.current() == second.generation
    assert first.generation not in app.store.generations()


def test_one_upsert_rewrites_exactly_one_shard(app: App) -> None:
    docs = [doc(i) for i in range(1000)]
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(row_chunks("src", docs))
    first = app.publisher.publish(full=True)
    assert first.generation
    app.applier.apply_raw([("t", orjson.dumps(doc(555, version=2, day=3)))])
    second = app.publisher.publish()
    assert second.generation and (second.rendered, second.copied) == (1, 9)
    old, new = app.store.list(first.generation), app.store.list(second.generation)
    assert set(old) == set(new)
    changed = [
        n
        for n in new
        if naming.parse_shard_name(n)
        and not os.path.samefile(app.store.path(first.generation, n), app.store.path(second.generation, n))
    ]  # type: ignore[attr-defined]
    assert changed == [naming.shard_name("books", 6)]


def test_appending_dirties_at_most_ceil_plus_one_shards(app: App) -> None:
    model = Model()
    apply(app, model, [doc(i) for i in range(150)])  # shards 1 (full) and 2 (half)
    app.publisher.publish()
    n = 230
    apply(app, model, [doc(1000 + i) for i in range(n)])
    result = app.publisher.publish()
    assert result.rendered <= math.ceil(n / 100) + 1
    assert served(app) == model.expected()


def test_empty_manifest_is_never_published(app: App) -> None:
    with pytest.raises(EmptyManifest):
        app.publisher.publish()
    model = Model()
    apply(app, model, [doc(1), {"op": "delete", "section": "books", "key": "1", "version": 2}])
    with pytest.raises(EmptyManifest):
        app.publisher.publish()
    assert app.router.current() is None


def test_a_manifest_that_never_published_the_live_site_does_not_replace_it(app: App, tmp_path: Path) -> None:
    model = Model()
    apply(app, model, [doc(i) for i in range(30)])
    live = app.publisher.publish().generation
    assert live is not None and served(app) == model.expected()
    # Another manifest on the same data dir and router: the data dir's default SQLite file, say, when the
    # database URL was left out. It holds one document.
    other = App(app.settings.replace(database_url=None))
    try:
        apply(other, Model(), [doc(1000)])
        with pytest.raises(
            ForeignLive, match=f"the router serves generation {live}, which this manifest never published"
        ):
            other.publisher.publish()
        assert app.router.current() == live and served(app) == model.expected()
        # The command says so in one line, and the service's timer does not publish either.
        env = {
            "SITEMAPS_DATA_DIR": str(app.settings.data_dir),
            "SITEMAPS_ALLOWED_HOSTS": HOST,
            "SITEMAPS_BASE_URL": app.settings.base_url,
        }
        proc = cli("publish", env=env, check=False)
        assert proc.returncode == 1 and proc.stderr.startswith(f"error: the router serves generation {live},"), proc
        assert app.router.current() == live
        # On purpose: a full publish replaces the site with what this manifest holds.
        assert other.publisher.publish(full=True).generation is not None
        assert served(app) == {f"https://{HOST}/books/1000": "2024-05-01T10:00:00+00:00"}
    finally:
        other.close()


def test_a_source_far_smaller_than_the_manifest_does_not_replace_it(app: App, tmp_path: Path) -> None:
    """A truncated source file, or a query that stopped early, reads like a site that lost most of its
    documents: the rebuild refuses it before the swap, so the manifest and the live site stay whole."""
    settings = app.settings

    def rebuild(n: int, max_shrink: float = 0.5) -> None:
        docs = [doc(i) for i in range(n)]
        Rebuilder(app.manifest, settings.rules, settings.limits, 2, max_shrink).rebuild(row_chunks("src", docs))

    def site(n: int) -> dict[str, str | None]:
        return {f"https://{HOST}/books/{i}": "2024-05-01T10:00:00+00:00" for i in range(n)}

    rebuild(200)
    live = app.publisher.publish(full=True).generation
    assert live is not None and served(app) == site(200)
    with pytest.raises(
        SourceShrank,
        match="the source holds 99 valid documents and the manifest 200 URLs: this "
        "rebuild would remove 101 of them, more than the 50% allowed",
    ):
        rebuild(99)
    with app.manifest.read() as conn:
        assert len(conn.execute(select(documents.c.key)).all()) == 200
    assert app.manifest.reader.url_count() == 200 and app.publisher.publish().generation is None  # nothing dirty
    assert app.router.current() == live and served(app) == site(200)
    rebuild(100)  # half may go
    assert app.publisher.publish(full=True).generation is not None and served(app) == site(100)
    # The command says so in one line; the limit is an option (and SITEMAPS_MAX_SHRINK).
    source = tmp_path / "small.jsonl"
    source.write_bytes(b"".join(orjson.dumps(doc(i)) + b"\n" for i in range(10)))
    env = {
        "SITEMAPS_DATA_DIR": str(settings.data_dir),
        "SITEMAPS_DATABASE_URL": settings.manifest_url,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_BASE_URL": settings.base_url,
        "SITEMAPS_MAX_URLS": "100",
    }
    proc = cli("rebuild", "--source", str(source), env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: the source holds 10 valid documents and the manifest 100 URLs"
    ), proc
    assert served(app) == site(100)
    assert cli("rebuild", "--source", str(source), "--max-shrink", "2", env=env, check=False).returncode == 2
    cli("rebuild", "--source", str(source), env={**env, "SITEMAPS_MAX_SHRINK": "1"})
    assert served(app) == site(10)


def test_a_publish_that_would_remove_most_of_the_live_site_is_refused(app: App) -> None:
    """Deletions of most documents at once (a bug upstream, a replay of a topic that no longer holds every
    document) would take their URLs out of search engines: the publish refuses, and the live site stays."""
    model = Model()
    apply(app, model, [doc(i) for i in range(10)])
    live = app.publisher.publish().generation
    assert live is not None and served(app) == model.expected()
    whole = model.expected()
    apply(app, model, [{"op": "delete", "section": "books", "key": str(i), "version": 2} for i in range(6)])
    for full in (False, True):
        with pytest.raises(
            SiteShrank,
            match=f"generation {live} serves 10 URLs and this manifest holds 4: "
            "publishing would remove 6 of them, more than the 50% allowed",
        ):
            app.publisher.publish(full=full)
    assert app.router.current() == live and served(app) == whole
    assert [g.id for g in app.manifest.generations.all()] == [live]
    # The command says so in one line; --max-shrink (SITEMAPS_MAX_SHRINK) publishes the deletions on purpose.
    env = {
        "SITEMAPS_DATA_DIR": str(app.settings.data_dir),
        "SITEMAPS_DATABASE_URL": app.settings.manifest_url,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_BASE_URL": app.settings.base_url,
    }
    proc = cli("publish", env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: generation {live} serves 10 URLs"), proc
    assert app.router.current() == live
    assert cli("publish", "--max-shrink", "0.6", env=env).returncode == 0  # 6 of 10 may go
    assert app.router.current() != live and served(app) == model.expected() and len(model.expected()) == 4
    # Half may go in one publish, so a site shrinking step by step is published at every step.
    apply(app, model, [{"op": "delete", "section": "books", "key": str(i), "version": 2} for i in (6, 7)])
    assert app.publisher.publish().generation is not None and served(app) == model.expected()


def test_one_publisher_at_a_time(app: App) -> None:
    from sitemap_keeper.snapshot.manifest.errors import PublishLockHeld

    app.applier.apply_raw([("t", orjson.dumps(doc(1)))])
    other = App(app.settings)  # a second process would see the same; the lock is per database
    try:
        with app.manifest.locks.publish(), pytest.raises(PublishLockHeld):
            other.publisher.publish()
        assert other.publisher.publish().generation is not None  # free again once released
    finally:
        other.close()


def test_one_upsert_at_scale_rewrites_one_shard_file(tmp_path: Path) -> None:
    from sitemap_keeper.snapshot import synthetic

    settings = Settings(data_dir=tmp_path / "data", allowed_hosts=(synthetic.HOST,), max_urls=5_000)
    a = App(settings)
    try:
        Rebuilder(a.manifest, settings.rules, settings.limits, 2).rebuild(
            row_chunks("synthetic", synthetic.catalog(100_000))
        )
        first = a.publisher.publish(full=True)
        assert first.generation and first.rendered == 20
        a.applier.apply_raw([("t", orjson.dumps(synthetic.document(4242, version=2, day=9)))])
        second = a.publisher.publish()
        assert second.generation and (second.rendered, second.copied) == (1, 19)
        store = a.store
        rewritten = [
            n
            for n in store.list(second.generation)
            if naming.parse_shard_name(n)
            and not os.path.samefile(store.path(first.generation, n), store.path(second.generation, n))
        ]  # type: ignore[attr-defined]
        # The synthetic catalog deals documents to the sections in turn; each section fills its shards in order.
        assert rewritten == [naming.shard_name(synthetic.SECTIONS[4242 % 4], 4242 // 4 // 5_000 + 1)]
    finally:
        a.close()


def test_rebuild_keeps_the_newest_copy_of_a_repeated_key(app: App) -> None:
    """Shard counts come from the load unless duplicates were removed: then they are counted again."""
    model = Model()
    docs = [doc(i, section=("books", "authors")[i % 2]) for i in range(330)]
    docs += [doc(i, version=5, section=("books", "authors")[i % 2], day=9) for i in range(0, 330, 7)]
    docs += [doc(3, version=2, section="authors", day=4)]  # older than nothing: i=3 is only version 1 so far
    for d in docs:
        model.event(d)
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(row_chunks("src", docs))
    assert (counts.applied, counts.stale) == (330, len(docs) - 330)
    assert sum(s.url_count for s in app.manifest.reader.shards()) == 330
    app.publisher.publish(full=True)
    assert served(app) == model.expected()
    # The counts the next apply starts from are right: one more document lands in the open shard.
    apply(app, model, [doc(1000, section="books")])
    app.publisher.publish()
    assert served(app) == model.expected()
    assert sum(s.url_count for s in app.manifest.reader.shards()) == 331


@pytest.mark.parametrize("seed", [1, 2])
def test_packed_documents_repeated_in_the_source_then_changed(tmp_path: Path, database_url: str, seed: int) -> None:
    """A rebuild keeps documents in packs (snapshot/packs.py); a source that repeats keys in one shard and across
    shards, with versions and without, ends as if applied in order, and events on packed documents win."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        base_url="http://127.0.0.1:8080/sitemaps/",
        allowed_hosts=(HOST,),
        max_urls=100,
        max_bytes=20_000,
        workers=2,
    )
    app = App(settings)
    try:
        _packed_documents(app, random.Random(seed))
    finally:
        app.close()


def _packed_documents(app: App, rnd: random.Random) -> None:
    model = Model()
    docs = []
    for i in range(700):
        k = rnd.randrange(300) if rnd.random() < 0.4 else 1000 + i  # repeated keys, near and far apart
        version = rnd.choice([None, rnd.randrange(1, 6)])
        d = doc(k, section=("books", "authors")[k % 2], day=1 + rnd.randrange(28), version=version)
        docs.append(d)
    for d in docs:
        model.event(d)
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(row_chunks("src", docs, 97))
    assert counts.applied == len(model.live) and counts.applied + counts.stale == len(docs)
    assert sum(s.url_count for s in app.manifest.reader.shards()) == len(model.live)
    app.publisher.publish(full=True)
    assert served(app) == model.expected()
    assert {loc: lastmod for _s, _k, loc, lastmod in app.manifest.reader.documents()} == model.expected()
    # Updates (some too big for their shard: they move), deletions and new documents over packed ones.
    events: list[dict[str, object]] = []
    for n, (section, key) in enumerate(rnd.sample(sorted(model.live), 120)):
        if n % 3 == 0:
            events.append({"op": "delete", "section": section, "key": key, "version": 10})
        else:
            padding = "x" * (1500 if n % 3 == 1 else 0)  # over its shard's 20,000 bytes: it moves
            events.append(
                {
                    "op": "upsert",
                    **doc(int(key), section=section, day=2, version=10),
                    "loc": f"https://{HOST}/{section}/{key}?p={padding}",
                }
            )
    events += [doc(5000 + i, section="authors", version=1) for i in range(50)]
    before = _shard_nos(app)
    apply(app, model, events)
    after = _shard_nos(app)
    padded = {(str(e["section"]), str(e["key"])) for e in events if "?p=x" in str(e.get("loc"))}
    assert any(after[ident] != before[ident] for ident in padded)  # too big for their shard: moved
    app.publisher.publish()
    assert served(app) == model.expected()
    assert {loc: lastmod for _s, _k, loc, lastmod in app.manifest.reader.documents()} == model.expected()


def _shard_nos(app: App) -> dict[tuple[str, str], int]:
    with app.manifest.read() as conn:
        rows = conn.execute(select(documents.c.section, documents.c.key, documents.c.shard_no)).all()
    return {(s, k): n for s, k, n in rows}


@pytest.mark.parametrize("changed", [False, True])
def test_a_packed_document_missing_from_its_packs_is_reported_not_published(app: App, changed: bool) -> None:
    """A rebuild keeps content in packs; a documents row whose pack is gone (a manifest changed by hand) stops
    the render with the document and the shard named, whether every row of the shard is packed or some are not."""
    from sitemap_keeper.snapshot.manifest.errors import ManifestDamaged
    from sitemap_keeper.snapshot.manifest.schema import shard_packs
    from sitemap_keeper.snapshot.publish import render_shard

    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [doc(i) for i in range(30)], 10)
    )
    if changed:  # one row of the shard written in full by an event, the others still packed
        apply(app, Model(), [doc(5, version=2, day=9)])
    with app.manifest.write() as conn:  # the pack of documents 10 to 19
        conn.execute(shard_packs.delete().where(shard_packs.c.seq == 2))
    with pytest.raises(ManifestDamaged, match="document '10' of shard 1 of section books is packed, but no pack"):
        render_shard(app.manifest, "books", 1, app.settings.limits)


@pytest.mark.parametrize("seed", [3, 4])
def test_an_untouched_shard_renders_from_its_packs_as_from_its_rows(
    tmp_path: Path, database_url: str, seed: int
) -> None:
    """A shard no event touched since the rebuild is rendered from its packs alone (no documents rows read);
    with keys repeated in the source, in one shard and across shards, that gives what its rows give."""
    from sitemap_keeper.snapshot.manifest.schema import PACKED_REVISION, meta

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        allowed_hosts=(HOST,),
        max_urls=100,
        max_bytes=20_000,
        workers=2,
    )
    app = App(settings)
    try:
        rnd = random.Random(seed)
        docs = [
            doc(k, section=("books", "authors")[k % 2], day=1 + rnd.randrange(28), version=rnd.randrange(1, 6))
            for k in (rnd.randrange(300) if rnd.random() < 0.4 else 1000 + i for i in range(700))
        ]
        Rebuilder(app.manifest, settings.rules, settings.limits, 2).rebuild(row_chunks("src", docs, 97))
        untouched = app.manifest.reader.shards()[0]
        apply(app, Model(), [doc(5000, section="authors")])  # touches the authors' open shard only

        def rows() -> dict[tuple[str, int], tuple[list[str], list[str | None], list[float | None]]]:
            with app.manifest.read() as conn:
                return {
                    (s.section, s.shard_no): app.manifest.reader.shard_rows(conn, s.section, s.shard_no)
                    for s in app.manifest.reader.shards()
                }

        with app.manifest.read() as conn, app.manifest.driver_cursor(conn) as (cur, mark):
            from_packs = {
                (s.section, s.shard_no)
                for s in app.manifest.reader.shards()
                if app.manifest.reader.as_rebuilt(cur, mark, s.section, s.shard_no) is not None
            }
        assert len(from_packs) == len(app.manifest.reader.shards()) - 1
        assert (untouched.section, untouched.shard_no) in from_packs
        rendered = rows()
        with app.manifest.write() as conn:  # every shard from its rows now
            conn.execute(meta.delete().where(meta.c.name == PACKED_REVISION))
        assert rows() == rendered
    finally:
        app.close()
