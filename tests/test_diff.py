"""Generation diffs, against what a crawler reads from each generation (parsed independently, with lxml)."""

from __future__ import annotations

import dataclasses
import gzip
import json
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
from sitemap_keeper.snapshot.document import Alternate, Document, Image
from sitemap_keeper.snapshot.manifest.schema import documents
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.render import URLSET_CLOSE, URLSET_OPEN, gzip_pieces, shard_pieces, url_fragment
from sitemap_keeper.snapshot.settings import Settings
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
    a = App(Settings(data_dir=tmp_path / "data", database_url=database_url, base_url=BASE,
                     allowed_hosts=(HOST,), max_urls=20, max_bytes=4096, workers=1))
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
    apply(app, [
        doc(1, version=2, day=9),  # new lastmod, same shard
        {"op": "delete", "section": "books", "key": "2", "version": 2},
        *[doc(i) for i in range(1000, 1005)],  # a new shard
        doc(4, version=2, loc=f"https://{HOST}/books/4-renamed"),  # same shard, another loc
        doc(6, version=2, priority=0.9),  # the shard changes, but no loc and no lastmod does
        doc(8, version=2, images=[{"loc": f"https://cdn.{HOST}/{n}.jpg"} for n in range(40)]),  # overflows
        doc(3, version=2, section="authors", day=12),
    ])
    b = publish(app)
    assert shard_of(app, "8") != before, "the test meant books/8 to move to another shard"
    apply(app, [{"op": "delete", "section": "books", "key": "1000", "version": 2},
                doc(8, version=3, day=15, images=[{"loc": f"https://cdn.{HOST}/x.jpg"}] * 40),
                doc(100, section="authors")])
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
    assert computed(app, a, b) == [("changed", "books", f"https://{HOST}/books/42",
                                    "2024-05-01T10:00:00+00:00", "2024-05-20T10:00:00+00:00")]
    assert sorted(reads) == [(a, "sitemap-books-3.xml.gz"), (b, "sitemap-books-3.xml.gz")]


def test_shard_parser_reads_only_url_locs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff, "_CHUNK", 97)  # many small pieces: elements and text split across them
    docs = [Document("books", str(i), f"https://{HOST}/b?id={i}&x=<{i}>", None if i % 3 else "2024-05-01",
                     images=(Image(f"https://cdn.{HOST}/{i}.jpg", title="t & <t>"),),
                     alternates=(Alternate("de", f"https://{HOST}/de/{i}"),)) for i in range(300)]
    data = gzip_pieces(shard_pieces([url_fragment(d) for d in docs]))
    expected = [(d.loc, d.lastmod) for d in docs]
    assert diff._own_shard_urls(data) == expected  # the regex path: this service's own files
    assert list(diff._parsed_shard_urls(data)) == expected  # expat
    assert list(diff.shard_urls(data)) == expected


def test_a_shard_is_read_back_a_block_at_a_time() -> None:
    """A shard of 50 MiB compresses to well under 1 MiB: decompressed a megabyte of input at a time, it was
    held whole (and copied) by the diff, which took `sitemaps publish` to 272 MiB. Here: 2.1 times the shard
    then, under half of it now."""
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


@pytest.mark.parametrize("xml", [
    # Another writer's layout: indented, one element per line.
    b'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
    b"  <url>\n    <loc>https://librer.io/a?x=1&amp;y=2</loc>\n    <lastmod>2024-05-01</lastmod>\n  </url>\n"
    b"  <url><loc>https://librer.io/b</loc></url>\n</urlset>\n",
    # This service's header, but a character reference escape() never writes.
    (URLSET_OPEN + '<url><loc>https://librer.io/a?x=1&#38;y=2</loc><lastmod>2024-05-01</lastmod></url>\n'
     '<url><loc>https://librer.io/b</loc></url>\n' + URLSET_CLOSE).encode(),
    # This service's header, but a <url> the one-line regex does not read.
    (URLSET_OPEN + '<url><loc>https://librer.io/a?x=1&amp;y=2</loc><lastmod>2024-05-01</lastmod></url>\n'
     '<url>\n<loc>https://librer.io/b</loc></url>\n' + URLSET_CLOSE).encode(),
])
def test_shard_parser_falls_back_to_expat_for_other_files(xml: bytes) -> None:
    data = gzip_pieces([xml])
    assert diff._own_shard_urls(data) is None
    assert list(diff.shard_urls(data)) == [("https://librer.io/a?x=1&y=2", "2024-05-01"), ("https://librer.io/b", None)]


def run(env: dict[str, str], *args: str, stdin: bytes | None = None, code: int = 0) -> Result:
    """The real `sitemaps` command, in this process: a subprocess spends seconds importing."""
    result = CliRunner().invoke(sitemaps, list(args), env=env, input=stdin, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def cli_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_DATABASE_URL": database_url,
            "SITEMAPS_BASE_URL": BASE, "SITEMAPS_ALLOWED_HOSTS": HOST, "SITEMAPS_MAX_URLS": "20",
            "SITEMAPS_LOG_LEVEL": "WARNING", **extra}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the CLI adds no database logic
def test_diff_robots_and_status_through_the_cli(tmp_path: Path, database_url: str) -> None:
    env = cli_env(tmp_path, database_url)
    assert "no manifest at" in run(env, "diff", code=1).stderr  # a reader creates none

    src = tmp_path / "catalog.jsonl"
    src.write_bytes(jsonl(*[doc(i) for i in range(40)]))
    run(env, "rebuild", "--source", str(src))
    run(env, "apply", "-", stdin=jsonl(doc(1, version=2, day=9), doc(500),
                                       {"op": "delete", "section": "books", "key": "2", "version": 2}))
    run(env, "publish")
    status = json.loads(run(env, "status", "--json").stdout)
    b = status["live_generation"]
    a = status["last_diff"]["base"]
    assert status["last_diff"] == {"generation": b, "base": a, "added": 1, "removed": 1, "changed": 1,
                                   "sections": {"books": {"added": 1, "removed": 1, "changed": 1}}}

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
        ("changed", "1"), ("added", "2"), ("removed", "500")}
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
