"""Generation diffs, against what a crawler reads from each generation (parsed independently, with lxml)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli import cli as sitemaps
from sitemap_keeper.snapshot import diff
from sitemap_keeper.snapshot.document import ANY_HOST, Alternate, Document, Image
from sitemap_keeper.snapshot.manifest.records import FileRecord
from sitemap_keeper.snapshot.manifest.schema import documents
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.render import (
    URLSET_CLOSE,
    URLSET_OPEN,
    document_row,
    gzip_pieces,
    shard_pieces,
    url_fragment,
)
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores.local import LocalStore
from tests.factories import HOST, doc, jsonl
from tests.support import cli, read_site

BASE = "http://127.0.0.1:8080/sitemaps/"
Row = tuple[str, str, str, str | None, str | None]  # a Change as a tuple


def apply(app: App, events: list[dict[str, object]]) -> None:
    app.applier.apply_raw([(f"test:{i}", orjson.dumps(e)) for i, e in enumerate(events)])


def publish(app: App) -> str:
    gen = app.publisher.publish().generation
    assert gen is not None
    return gen


def crawled(app: App, gen: str) -> dict[str, str | None]:
    return read_site(lambda name: app.store.get(gen, name), app.settings.base_url).urls


def expected(old: dict[str, str | None], new: dict[str, str | None]) -> set[Row]:
    """The diff by definition: section is the first path segment of every test URL."""
    out: set[Row] = set()
    for loc in old.keys() | new.keys():
        section = urlsplit(loc).path.split("/")[1]
        if loc not in old:
            out.add(("added", section, loc, None, new[loc]))
        elif loc not in new:
            out.add(("removed", section, loc, old[loc], None))
        elif old[loc] != new[loc]:
            out.add(("changed", section, loc, old[loc], new[loc]))
    return out


def computed(app: App, old: str | None, new: str) -> list[Row]:
    return [dataclasses.astuple(c) for c in diff.compare(app.manifest, app.store, old, new).changes()]


def counts(rows: set[Row]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, list[int]] = {}
    for kind, section, *_ in rows:
        out.setdefault(section, [0, 0, 0])[diff.KINDS.index(kind)] += 1
    return {s: (a, r, c) for s, (a, r, c) in out.items()}


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    # Tiny shards (20 URLs, 4 KiB) so a few dozen documents span shards and an update can overflow one.
    a = App(
        Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            base_url=BASE,
            allowed_hosts=(HOST,),
            max_urls=20,
            max_bytes=4096,
            workers=1,
        )
    )
    yield a
    a.close()


def shard_of(app: App, key: str) -> int:
    with app.manifest.engine.connect() as conn:
        query = select(documents.c.shard_no).where(documents.c.key == key, documents.c.section == "books")
        return int(conn.execute(query).scalar_one())


def test_diff_equals_what_crawlers_see(app: App) -> None:
    apply(app, [doc(i) for i in range(60)] + [doc(i, section="authors") for i in range(30)])
    a = publish(app)
    before = shard_of(app, "8")
    apply(
        app,
        [
            doc(1, version=2, day=9),  # new lastmod, same shard
            {"op": "delete", "section": "books", "key": "2", "version": 2},
            *[doc(i) for i in range(1000, 1005)],  # a new shard
            doc(4, version=2, loc=f"https://{HOST}/books/4-renamed"),  # same shard, another loc
            doc(6, version=2, priority=0.9),  # the shard changes, but no loc and no lastmod does
            doc(8, version=2, images=[{"loc": f"https://cdn.{HOST}/{n}.jpg"} for n in range(40)]),  # overflows
            doc(3, version=2, section="authors", day=12),
        ],
    )
    b = publish(app)
    assert shard_of(app, "8") != before, "the test meant books/8 to move to another shard"
    apply(
        app,
        [
            {"op": "delete", "section": "books", "key": "1000", "version": 2},
            doc(8, version=3, day=15, images=[{"loc": f"https://cdn.{HOST}/x.jpg"}] * 40),
            doc(100, section="authors"),
        ],
    )
    c = publish(app)
    sites = {g: crawled(app, g) for g in (a, b, c)}
    for old, new in ((a, b), (b, c), (a, c), (c, a)):
        rows = computed(app, old, new)
        assert set(rows) == expected(sites[old], sites[new]), (old, new)
        assert len(rows) == len(set(rows))
    assert not any(row[2].endswith(("/books/6", "/books/8")) for row in computed(app, a, b))
    assert {r[0] for r in computed(app, None, a)} == {"added"} and len(computed(app, None, a)) == 90

    app.announcer.wait()  # what was recorded when each went live
    for gen, base in ((b, a), (c, b)):
        rec = diff.recorded(app.manifest, gen)
        assert rec is not None and rec.base_id == base
        want = counts(expected(sites[base], sites[gen]))
        assert {s: (n.added, n.removed, n.changed) for s, n in rec.sections.items() if n.total} == want
        assert set(rec.sections) == {"books", "authors"}
    first = diff.recorded(app.manifest, a)
    assert first is not None and first.base_id is None
    assert {s: n.added for s, n in first.sections.items()} == {"books": 60, "authors": 30}

    prune(app.manifest, app.store, app.router, keep=1, grace=0)
    with pytest.raises(diff.DiffUnavailable, match=f"generation {a} is pruned"):
        diff.compare(app.manifest, app.store, a, c)
    assert diff.recorded(app.manifest, b) is not None  # the counts outlive the files


def test_identical_shards_are_never_read(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    apply(app, [doc(i) for i in range(100)])  # five shards
    a = publish(app)
    apply(app, [doc(42, version=2, day=20)])
    b = publish(app)
    app.announcer.wait()  # it reads them too, recording the diff
    reads: list[tuple[str, str]] = []
    get = app.store.get

    def counting_get(gen: str, name: str) -> bytes:
        reads.append((gen, name))
        return get(gen, name)

    monkeypatch.setattr(app.store, "get", counting_get)
    assert computed(app, a, b) == [
        ("changed", "books", f"https://{HOST}/books/42", "2024-05-01T10:00:00+00:00", "2024-05-20T10:00:00+00:00")
    ]
    assert sorted(reads) == [(a, "sitemap-books-3.xml.gz"), (b, "sitemap-books-3.xml.gz")]


def test_shard_parser_reads_only_url_locs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff, "_BLOCK_BYTES", 97)  # many small pieces: elements and text split across them
    docs = [
        Document(
            "books",
            str(i),
            f"https://{HOST}/b?id={i}&x=<{i}>",
            None if i % 3 else "2024-05-01",
            images=(Image(f"https://cdn.{HOST}/{i}.jpg", title="t & <t>"),),
            alternates=(Alternate("de", f"https://{HOST}/de/{i}"),),
        )
        for i in range(300)
    ]
    data = gzip_pieces(shard_pieces([url_fragment(d) for d in docs]))
    expected = [(d.loc, d.lastmod) for d in docs]
    assert diff._own_shard_urls(data) == expected  # the regex path: this service's own files
    assert list(diff._parsed_shard_urls(data)) == expected  # expat
    assert list(diff.shard_urls(data)) == expected


def test_a_shard_is_read_back_a_block_at_a_time() -> None:
    """A shard of 50 MiB compresses to well under 1 MiB: the diff decompresses it a block at a time, never
    holding (and copying) the whole shard."""
    images = tuple(Image(f"https://cdn.{HOST}/{j}-{'x' * 60}.jpg", title="t" * 80) for j in range(6))
    docs = [Document("books", str(i), f"https://{HOST}/b/{i}", "2024-05-01", images=images) for i in range(8_000)]
    data = gzip_pieces(shard_pieces([url_fragment(d) for d in docs]))
    size = len(gzip.decompress(data))
    assert size > 50 * len(data)  # compressed far below the chunk of input once read at a time
    expected = [(d.loc, d.lastmod) for d in docs]
    for read in (diff._own_shard_urls, lambda data: list(diff._parsed_shard_urls(data))):
        tracemalloc.start()
        try:
            assert read(data) == expected
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < size, f"reading a {size:,}-byte shard back peaked at {peak:,} bytes"


@pytest.mark.parametrize(
    "xml",
    [
        # Another writer's layout: indented, one element per line.
        b'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        b"  <url>\n    <loc>https://librer.io/a?x=1&amp;y=2</loc>\n    <lastmod>2024-05-01</lastmod>\n  </url>\n"
        b"  <url><loc>https://librer.io/b</loc></url>\n</urlset>\n",
        # This service's header, but a character reference escape() never writes.
        (
            URLSET_OPEN + "<url><loc>https://librer.io/a?x=1&#38;y=2</loc><lastmod>2024-05-01</lastmod></url>\n"
            "<url><loc>https://librer.io/b</loc></url>\n" + URLSET_CLOSE
        ).encode(),
        # This service's header, but a <url> the one-line regex does not read.
        (
            URLSET_OPEN + "<url><loc>https://librer.io/a?x=1&amp;y=2</loc><lastmod>2024-05-01</lastmod></url>\n"
            "<url>\n<loc>https://librer.io/b</loc></url>\n" + URLSET_CLOSE
        ).encode(),
    ],
)
def test_shard_parser_falls_back_to_expat_for_other_files(xml: bytes) -> None:
    data = gzip_pieces([xml])
    assert diff._own_shard_urls(data) is None
    assert list(diff.shard_urls(data)) == [("https://librer.io/a?x=1&y=2", "2024-05-01"), ("https://librer.io/b", None)]


def fragments(n: int, seed: int) -> dict[int, str]:
    """Fragments of n documents by key, of every kind the diff meets: images, video (one description with a
    line break, so its <url> spans two lines), plain ones."""
    rnd = random.Random(seed)
    out = {}
    for i in range(n):
        extra: dict[str, object] = {}
        if i % 3 == 0:
            extra["images"] = [{"loc": f"https://cdn.{HOST}/{i}.jpg", "title": "t & <t>"}]
        if i % 5 == 0:
            extra["video"] = [
                {
                    "thumbnail_loc": f"https://cdn.{HOST}/{i}.jpg",
                    "title": f"V{i}",
                    "description": "two\nlines" if i % 10 == 0 else "d",
                    "content_loc": f"https://cdn.{HOST}/{i}.mp4",
                }
            ]
        out[i] = document_row(doc(i, day=1 + rnd.randrange(28), **extra), ANY_HOST)[7]
    return out


def edited(before: dict[int, str], seed: int, edits: int) -> dict[int, str]:
    """before with `edits` random edits: a new lastmod, another priority or video title (same loc and lastmod),
    removed, added, a new loc, or the same bytes again."""
    rnd = random.Random(seed)
    after = dict(before)
    for _ in range(edits):
        i = rnd.choice(sorted(after))
        kind = rnd.randrange(6)
        if kind == 0:
            after[i] = document_row(doc(i, day=29 + rnd.randrange(3)), ANY_HOST)[7]
        elif kind == 1:
            after[i] = after[i].replace("</loc>", "</loc>", 1).replace("</url>", "<priority>0.9</priority></url>")
        elif kind == 2:
            del after[i]
        elif kind == 3:
            j = 10_000 + rnd.randrange(10_000)
            after[j] = document_row(doc(j), ANY_HOST)[7]
        elif kind == 4:
            after[i] = after[i].replace(f"/books/{i}<", f"/books/{i}-renamed<", 1)
        elif "<video:title>" in after[i]:
            after[i] = after[i].replace("<video:title>", "<video:title>New ", 1)
    return after


def shard(frags: dict[int, str]) -> bytes:
    return gzip_pieces(shard_pieces([frags[k] for k in sorted(frags, key=str)]))  # by key, as rendered


def whole_files(old: bytes | None, new: bytes | None) -> diff.ShardDiff:
    """compare_shard by definition: every URL of both files."""
    o = dict(diff.shard_urls(old)) if old is not None else {}
    n = dict(diff.shard_urls(new)) if new is not None else {}
    changed = [
        diff.Change("changed", "books", loc, o[loc], n[loc]) for loc in sorted(o.keys() & n.keys()) if o[loc] != n[loc]
    ]
    return diff.ShardDiff(
        changed,
        sorted((loc, o[loc]) for loc in o.keys() - n.keys()),
        sorted((loc, n[loc]) for loc in n.keys() - o.keys()),
    )


@pytest.mark.parametrize("edits", [0, 1, 3, 40, 400])
@pytest.mark.parametrize("reach", [diff.REJOIN_REACH, 64])  # 64: most partings end in the sets of the rest
@pytest.mark.parametrize("chunk", [diff._BLOCK_BYTES, 97])  # 97: the walk's window cut everywhere, lines split across
def test_a_shard_pair_compares_its_differing_lines_as_the_whole_files(
    edits: int, reach: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diff, "REJOIN_REACH", reach)
    monkeypatch.setattr(diff, "_BLOCK_BYTES", chunk)
    for seed in range(5):
        before = fragments(600, seed)
        after = edited(before, seed, edits)
        old, new = shard(before), shard(after)
        if edits <= 40 and reach > 64:
            assert diff._urls_apart(old, new) is not None  # the line walk, not the whole files
        got = diff.compare_shard(diff.ShardPair("books", old, new))
        want = whole_files(old, new)
        assert (got.changed, sorted(got.old_only), sorted(got.new_only)) == (
            want.changed,
            want.old_only,
            want.new_only,
        ), (edits, seed)
        if edits == 0:
            assert got == diff.ShardDiff([], [], [])
    for side in (None, shard(before)):  # a shard on one side only: every URL of the other
        assert diff.compare_shard(diff.ShardPair("books", side, shard(after))).new_only or side is not None


def test_lines_alike_are_never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fragments(2000, 1)
    after = dict(before)
    after[7] = document_row(doc(7, day=30), ANY_HOST)[7]
    parsed: list[bytes] = []
    scan = diff._scan_own

    def counting_scan(block: bytes, found: list[tuple[str, str | None]]) -> bool:
        parsed.append(block)
        return scan(block, found)

    monkeypatch.setattr(diff, "_scan_own", counting_scan)
    got = diff.compare_shard(diff.ShardPair("books", shard(before), shard(after)))
    assert got.changed == [
        diff.Change(
            "changed",
            "books",
            f"https://{HOST}/books/7",
            f"2024-05-{before[7].split('2024-05-')[1][:2]}T10:00:00+00:00",
            "2024-05-30T10:00:00+00:00",
        )
    ]
    assert [block.count(b"<url>") for block in parsed] == [1, 1]  # the line each side holds, nothing else


def test_a_shard_pair_is_walked_a_window_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two versions of a shard that compresses 50 to 1, one URL apart: compared without holding either whole,
    in a window of a few blocks of each (blocks of 64 KiB here, so that the window is small beside the shard)."""
    monkeypatch.setattr(diff, "_BLOCK_BYTES", 1 << 16)
    images = tuple(Image(f"https://cdn.{HOST}/{j}-{'x' * 60}.jpg", title="t" * 80) for j in range(6))
    docs = [Document("books", str(i), f"https://{HOST}/b/{i}", "2024-05-01", images=images) for i in range(8_000)]
    old = gzip_pieces(shard_pieces([url_fragment(d) for d in docs]))
    docs[4_321] = dataclasses.replace(docs[4_321], lastmod="2024-05-02")
    new = gzip_pieces(shard_pieces([url_fragment(d) for d in docs]))
    size = len(gzip.decompress(new))
    assert size > 50 * len(new)
    tracemalloc.start()
    try:
        got = diff.compare_shard(diff.ShardPair("books", old, new))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.changed == [diff.Change("changed", "books", f"https://{HOST}/b/4321", "2024-05-01", "2024-05-02")]
    assert peak < size / 4, f"comparing two {size:,}-byte shards peaked at {peak:,} bytes"


@pytest.mark.parametrize(
    "xml",
    [
        # Another writer's file on one side: both are read whole.
        b'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        b"  <url>\n    <loc>https://librer.io/books/1</loc>\n    <lastmod>2024-05-09</lastmod>\n  </url>\n</urlset>\n",
        # This service's header, a <url> whose lastmod is on a line of its own, and the lines both hold.
        (
            URLSET_OPEN + "<url><loc>https://librer.io/books/1</loc>\n<lastmod>2024-05-09</lastmod></url>\n"
            "<url><loc>https://librer.io/books/2</loc><lastmod>2024-05-01T10:00:00+00:00</lastmod></url>\n"
            + URLSET_CLOSE
        ).encode(),
    ],
)
def test_a_file_not_laid_out_as_this_service_writes_is_compared_whole(xml: bytes) -> None:
    old = (
        URLSET_OPEN + "<url><loc>https://librer.io/books/1</loc><lastmod>2024-05-01</lastmod></url>\n"
        "<url><loc>https://librer.io/books/2</loc><lastmod>2024-05-01T10:00:00+00:00</lastmod></url>\n" + URLSET_CLOSE
    ).encode()
    pair = diff.ShardPair("books", gzip_pieces([old]), gzip_pieces([xml]))
    assert diff._urls_apart(pair.old, pair.new) is None  # type: ignore[arg-type]
    got, want = diff.compare_shard(pair), whole_files(pair.old, pair.new)
    assert (got.changed, got.old_only, got.new_only) == (want.changed, want.old_only, want.new_only)
    assert [c.loc for c in got.changed] == ["https://librer.io/books/1"]


def put_generation(store: LocalStore, gen: str, shards: dict[int, dict[int, str]]) -> dict[str, FileRecord]:
    store.create(gen)
    out = {}
    for no, frags in shards.items():
        name, data = f"sitemap-books-{no}.xml.gz", shard(frags)
        out[name] = FileRecord(name, len(data), store.put(gen, name, data), len(frags), section="books", shard_no=no)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_shards_compared_in_workers_give_the_diff_by_definition(tmp_path: Path, workers: int) -> None:
    base = fragments(900, 3)
    old = {no: {k: f for k, f in base.items() if k % 9 == no} for no in range(9)}
    new = {no: edited(frags, no, 5) for no, frags in old.items()}
    new[0] = dict(old[0])  # rewritten with the same bytes: never read
    new[1][999] = old[2][2]  # the same fragment in another shard: moved, not removed nor added
    new[2].pop(2, None)
    del new[3]  # on the old side only
    new[9] = {5000 + k: document_row(doc(5000 + k), ANY_HOST)[7] for k in range(5)}  # on the new side only
    store = LocalStore(tmp_path)
    a, b = put_generation(store, "a", old), put_generation(store, "b", new)
    comparison = diff.Comparison(store, "a", "b", a, b, workers)
    assert "sitemap-books-0.xml.gz" not in comparison.differing and len(comparison.differing) == 9
    rows = [dataclasses.astuple(c) for c in comparison.changes()]
    urls = [
        {loc: lastmod for no in sorted(side) for loc, lastmod in diff.shard_urls(shard(side[no]))}
        for side in (old, new)
    ]
    assert set(rows) == expected(*urls) and len(rows) == len(set(rows))
    assert not any(row[2] == f"https://{HOST}/books/2" for row in rows)


def test_a_video_or_news_change_without_a_new_lastmod_is_no_change(app: App) -> None:
    news = {
        "publication": {"name": "The Times", "language": "en"},
        "publication_date": "2024-05-01T10:00:00+00:00",
        "title": "Story",
    }
    video = {
        "thumbnail_loc": f"https://cdn.{HOST}/t.jpg",
        "title": "A title",
        "description": "d",
        "content_loc": f"https://cdn.{HOST}/v.mp4",
    }
    apply(app, [doc(i) for i in range(10)] + [doc(1, version=2, video=[video]), doc(2, version=2, news=news)])
    a = publish(app)
    apply(
        app,
        [
            doc(1, version=3, video=[{**video, "title": "Another title"}]),
            doc(2, version=3, news={**news, "title": "Another story"}),
        ],
    )
    b = publish(app)
    assert computed(app, a, b) == []
    apply(app, [doc(1, version=4, day=9, video=[video]), doc(2, version=4, day=9, news=news)])
    c = publish(app)
    assert sorted(computed(app, b, c)) == [
        ("changed", "books", f"https://{HOST}/books/{i}", "2024-05-01T10:00:00+00:00", "2024-05-09T10:00:00+00:00")
        for i in (1, 2)
    ]


def run(env: dict[str, str], *args: str, stdin: bytes | None = None, code: int = 0) -> Result:
    """The real `sitemaps` command, in this process: a subprocess spends seconds importing."""
    result = CliRunner().invoke(sitemaps, list(args), env=env, input=stdin, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def cli_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "20",
        "SITEMAPS_LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the CLI adds no database logic
def test_diff_robots_and_status_through_the_cli(tmp_path: Path, database_url: str) -> None:
    env = cli_env(tmp_path, database_url)
    assert "no manifest at" in run(env, "diff", code=1).stderr  # a reader creates none

    src = tmp_path / "catalog.jsonl"
    src.write_bytes(jsonl(*[doc(i) for i in range(40)]))
    run(env, "rebuild", "--source", str(src))
    run(
        env,
        "apply",
        "-",
        stdin=jsonl(doc(1, version=2, day=9), doc(500), {"op": "delete", "section": "books", "key": "2", "version": 2}),
    )
    run(env, "publish")
    status = json.loads(run(env, "status", "--json").stdout)
    b = status["live_generation"]
    a = status["last_diff"]["base"]
    assert status["last_diff"] == {
        "generation": b,
        "base": a,
        "added": 1,
        "removed": 1,
        "changed": 1,
        "sections": {"books": {"added": 1, "removed": 1, "changed": 1}},
    }

    lines = run(env, "diff").stdout.splitlines()
    assert lines == [
        f"from {a} to {b}",
        f"~ books https://{HOST}/books/1 2024-05-01T10:00:00+00:00 -> 2024-05-09T10:00:00+00:00",
        f"- books https://{HOST}/books/2 2024-05-01T10:00:00+00:00",
        f"+ books https://{HOST}/books/500 2024-05-01T10:00:00+00:00",
        f"  {'section':<24} {'added':>10} {'removed':>10} {'changed':>10}",
        f"  {'books':<24} {1:>10} {1:>10} {1:>10}",
        f"  {'total':<24} {1:>10} {1:>10} {1:>10}",
    ]
    assert run(env, "diff", a).stdout.splitlines() == lines  # NEW defaults to the live generation
    back = json.loads(run(env, "diff", b, a, "--json").stdout)
    assert {(c["change"], c["loc"].rsplit("/", 1)[1]) for c in back["changes"]} == {
        ("changed", "1"),
        ("added", "2"),
        ("removed", "500"),
    }
    assert (back["from"], back["to"], back["added"], back["removed"], back["changed"]) == (b, a, 1, 1, 1)

    text = run(env, "status").stdout
    assert f"last diff:        +1 -1 ~1 URLs against {a}" in text and f"Sitemap: {BASE}sitemap.xml" in text
    robots = run(env, "robots").stdout.splitlines()
    assert robots[-1] == f"Sitemap: {BASE}sitemap.xml" and all(line.startswith("#") for line in robots[:-1])

    run(env, "apply", "-", stdin=jsonl(doc(501)))
    run(env, "publish")
    run(env, "prune", "--keep", "1", "--grace", "0")
    gone = cli("diff", a, env=env, check=False)  # a subprocess: the exit status and message a user sees
    assert gone.returncode == 1 and f"generation {a} is pruned" in gone.stderr
    assert "Traceback" not in gone.stderr
    summary = json.loads(run(env, "diff", "--summary", "--json").stdout)  # its base is pruned: recorded
    assert (summary["from"], summary["added"], summary["removed"], summary["changed"]) == (b, 1, 0, 0)
    assert "changes" not in summary
