"""Google News sitemaps: validation, the two-day window with a controlled clock, expiry without events, the
1,000-URL split, one file per change, on SQLite and PostgreSQL; every published file valid against Google's
news XSD with the core schema, and the served news sitemap equal to a model's window after every step."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.events import parse_event
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.metrics import Metrics
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.scheduler import Timers
from sitemap_keeper.snapshot.document import InvalidDocument, Rules
from sitemap_keeper.snapshot.news import parse_news_name
from sitemap_keeper.snapshot.publish import plan
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.render import document_row, fast_row
from sitemap_keeper.snapshot.serve import make_server, serve_in_thread
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.status import status
from sitemap_keeper.snapshot.verify import VerificationError, verify_generation
from tests.support import http_fetch, read_site, validate

HOST = "news.example"
NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # the controlled clock starts here
DAY = 86400.0


def article(
    i: int, published: datetime, version: int = 1, title: str | None = None, section: str = "world"
) -> dict[str, Any]:
    return {
        "section": section,
        "key": str(i),
        "loc": f"https://{HOST}/{section}/{i}",
        "version": version,
        "news": {
            "publication": {"name": "The Example & Times", "language": "en"},
            "publication_date": published.isoformat(),
            "title": title or f"Story <{i}>",
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


class NewsModel:
    """The ground truth: loc -> (publication instant, title) of every live article; the window, naively."""

    def __init__(self) -> None:
        self.articles: dict[str, tuple[float, str]] = {}
        self.locs: set[str] = set()

    def upsert(self, doc: dict[str, Any]) -> None:
        self.locs.add(doc["loc"])
        news = doc.get("news")
        if news is None:
            self.articles.pop(doc["loc"], None)
        else:
            self.articles[doc["loc"]] = (datetime.fromisoformat(news["publication_date"]).timestamp(), news["title"])

    def delete(self, loc: str) -> None:
        self.locs.discard(loc)
        self.articles.pop(loc, None)

    def window(self, now: float) -> dict[str, str]:
        return {loc: title for loc, (ts, title) in self.articles.items() if ts > now - 2 * DAY}


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    """Google's limits: 1,000 URLs per news file (the regular shards get their 50,000)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        base_url="http://127.0.0.1:8080/sitemaps/",
        allowed_hosts=(HOST,),
        workers=1,
    )
    a = App(settings)
    yield a
    a.close()


def apply(app: App, model: NewsModel, docs: list[dict[str, Any]]) -> None:
    counts = app.applier.apply_raw([(f"t:{i}", orjson.dumps(d)) for i, d in enumerate(docs)])
    assert counts.rejected == 0, app.manifest.dead_letters.all()
    for d in docs:
        if d.get("op") == "delete":
            model.delete(f"https://{HOST}/{d['section']}/{d['key']}")
        else:
            model.upsert(d)


def served_news(app: App) -> tuple[dict[str, str], set[str], dict[str, bytes]]:
    """Through the real server and the root index: the news files' {loc: title}, every regular URL, the files."""
    server = make_server(app.store, app.router, app.settings.base_path, "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        site = read_site(
            http_fetch(f"http://127.0.0.1:{server.server_port}{app.settings.base_path}"), app.settings.base_url
        )  # validates every file, news ones with Google's news XSD
    finally:
        server.shutdown()
        server.server_close()
    news_files = {name: xml for name, xml in site.files.items() if parse_news_name(name)}
    for name, xml in news_files.items():
        for url in validate(name, xml).iter(f"{SM}url"):
            assert url.findtext(f"{NEWS}news/{NEWS}publication/{NEWS}name") == "The Example & Times"
    for name, xml in site.files.items():
        if name not in news_files:
            assert b"<news:" not in xml, name  # the regular shards list the URLs without their news
    return site.news, set(site.urls), news_files


def news_rendered(app: App, gen: str | None, base: str | None) -> set[str]:
    """The news files of `gen` not copied from `base` (their checksums differ or they are new)."""
    assert gen is not None
    new = {n: f.md5 for n, f in app.manifest.generations.files(gen).items() if parse_news_name(n)}
    old = {n: f.md5 for n, f in app.manifest.generations.files(base).items() if parse_news_name(n)} if base else {}
    return {n for n, md5 in new.items() if old.get(n) != md5}


def test_window_ages_out_by_the_clock_without_events(app: App) -> None:
    clock = Clock()
    app.publisher.clock = clock
    model = NewsModel()
    t0 = T0
    docs = [article(i, t0 - timedelta(hours=i * 12 + 1)) for i in range(6)]  # 1h, 13h, 25h, 37h, 49h, 61h old
    docs.append({"section": "world", "key": "plain", "loc": f"https://{HOST}/world/plain"})
    apply(app, model, docs)
    first = app.publisher.publish()
    window, regular, files = served_news(app)
    assert window == model.window(clock.now) and len(window) == 4
    assert regular == model.locs  # every article stays in the regular sitemap, in or out of the window
    assert list(files) == ["sitemap-world.news-1.xml.gz"]
    # The next expiry, what the publish timer acts on: when the 37-hour-old article turns 48 hours old.
    p = plan(app.manifest, first.generation, now=clock.now)
    assert not p.dirty and p.news_expiry == (t0 - timedelta(hours=37)).timestamp() + 2 * DAY

    clock.now += 11 * 3600 - 1  # a quiet night: no event; one second before the next article leaves
    assert app.publisher.publish().generation is None
    clock.now += 1  # it leaves now: the publish timer's next turn rewrites the file, with no event at all
    second = app.publisher.publish()
    assert second.generation is not None and second.rendered == 1  # the news file alone
    window, _regular, _files = served_news(app)
    assert window == model.window(clock.now) and len(window) == 3

    clock.now += 3 * DAY  # everything aged out: the news file leaves the indexes, the URLs stay
    third = app.publisher.publish()
    assert third.generation is not None
    window, regular, files = served_news(app)
    assert window == {} and files == {} and regular == model.locs


def test_one_change_rewrites_one_news_file_and_news_can_be_taken_away(app: App) -> None:
    clock = Clock()
    app.publisher.clock = clock
    model = NewsModel()
    docs = [article(i, T0 - timedelta(minutes=i)) for i in range(1001)]  # 1,001 articles: two news files
    apply(app, model, docs)
    first = app.publisher.publish()
    window, _regular, files = served_news(app)
    assert window == model.window(clock.now)
    assert sorted(files) == ["sitemap-world.news-1.xml.gz", "sitemap-world.news-2.xml.gz"]
    assert max(xml.count(b"<url>") for xml in files.values()) == 1000

    apply(app, model, [article(5, T0 - timedelta(minutes=5), version=2, title="Corrected")])
    second = app.publisher.publish()
    assert news_rendered(app, second.generation, first.generation) == {"sitemap-world.news-1.xml.gz"}
    assert second.rendered == 2  # and the document's regular shard
    window, _regular, _files = served_news(app)
    assert window == model.window(clock.now) and window[f"https://{HOST}/world/5"] == "Corrected"

    plain = {k: v for k, v in article(6, T0, version=3).items() if k != "news"}  # the same URL, no longer news
    apply(app, model, [plain, {"op": "delete", "section": "world", "key": "1000", "version": 9}])
    third = app.publisher.publish()
    assert news_rendered(app, third.generation, second.generation) == {"sitemap-world.news-1.xml.gz"}
    window, regular, files = served_news(app)
    assert window == model.window(clock.now) and f"https://{HOST}/world/6" in regular
    assert list(files) == ["sitemap-world.news-1.xml.gz"]  # the second held only the deleted article


def test_news_index_lastmod_is_the_newest_publication_date(app: App) -> None:
    clock = Clock()
    app.publisher.clock = clock
    apply(app, NewsModel(), [article(1, T0 - timedelta(hours=3)), article(2, T0 - timedelta(hours=1))])
    gen = app.publisher.publish().generation
    assert gen is not None
    index = validate("sitemap-world.xml", app.store.get(gen, "sitemap-world.xml"))
    entries = {e.findtext(f"{SM}loc"): e.findtext(f"{SM}lastmod") for e in index.iter(f"{SM}sitemap")}
    assert entries[app.settings.base_url + "sitemap-world.news-1.xml.gz"] == (T0 - timedelta(hours=1)).isoformat()
    news = gzip.decompress(app.store.get(gen, "sitemap-world.news-1.xml.gz"))
    assert b"<news:title>Story &lt;1&gt;</news:title>" in news and b"The Example &amp; Times" in news


RULES = Rules(frozenset({HOST}))
BAD = [
    ({"publication": {"name": "X", "language": "english"}}, "news.publication.language must be an ISO 639"),
    ({"publication": {"name": "X", "language": "en"}, "title": "t"}, "news.publication_date is required"),
    (
        {"publication": {"name": "X", "language": "en"}, "publication_date": "2026-13-01"},
        "news.publication_date is not a valid date",
    ),
    (
        {"publication": {"name": "", "language": "en"}, "publication_date": "2026-12-01"},
        "news.publication.name is required",
    ),
    ({"publication": {"name": "X", "language": "en"}, "publication_date": "2026-12-01"}, "news.title is required"),
    (
        {"publication": {"name": "X", "language": "en"}, "publication_date": "2026-12-01", "title": "a\x01b"},
        "news.title contains control characters",
    ),
    (
        {
            "publication": {"name": "X", "language": "en"},
            "publication_date": "2026-12-01",
            "title": "t",
            "keywords": "a, b",
        },
        "news.keywords is no longer read by Google News (deprecated)",
    ),
    (
        {
            "publication": {"name": "X", "language": "en"},
            "publication_date": "2026-12-01",
            "title": "t",
            "genres": "Blog",
        },
        "news.genres is no longer read by Google News",
    ),
    (
        {
            "publication": {"name": "X", "language": "en", "country": "x"},
            "publication_date": "2026-12-01",
            "title": "t",
        },
        "news.publication has an unknown field 'country'",
    ),
    (
        {"publication": {"name": "X", "language": "en"}, "publication_date": "2026-12-01", "title": "x" * 2049},
        "news.title is 2049 characters",
    ),
    ("yes", "news must be an object"),
]


@pytest.mark.parametrize(("news", "reason"), BAD)
def test_news_refused_with_its_reason(news: Any, reason: str) -> None:
    doc = {"section": "world", "key": "1", "loc": f"https://{HOST}/world/1", "news": news}
    with pytest.raises(InvalidDocument, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        parse_event(orjson.dumps(doc), RULES)


def test_news_accepted_forms() -> None:
    doc = article(1, T0)
    doc["news"]["publication"]["language"] = "zh-CN"
    doc["news"]["publication_date"] = "2026-12-05"
    row = parse_event(orjson.dumps(doc), RULES)
    assert len(row) == 9
    art = row[8]
    assert "<news:language>zh-cn</news:language>" in art.xml
    assert "<news:publication_date>2026-12-05</news:publication_date>" in art.xml
    assert art.published_ts == T0.replace(hour=0).timestamp()


@pytest.mark.skipif(fast_row is None, reason="the C fast path is not built")
@pytest.mark.parametrize("field", ["news", "video"])
def test_fast_path_leaves_news_and_video_to_python(field: str) -> None:
    doc: dict[str, Any] = {"section": "world", "key": "1", "loc": f"https://{HOST}/world/1"}
    assert fast_row is not None and fast_row(doc, RULES.allowed_hosts) is not None
    doc[field] = {}
    assert fast_row(doc, RULES.allowed_hosts) is None
    doc[field] = None  # null is no block: the document's row is the common document's (the C path may leave
    common = {k: v for k, v in doc.items() if k != field}  # a key it does not read to the Python code)
    assert document_row(doc, RULES) == document_row(common, RULES) == fast_row(common, RULES.allowed_hosts)


def test_rebuild_loads_the_news_window_and_events_follow(app: App) -> None:
    clock = Clock()
    app.publisher.clock = clock
    model = NewsModel()
    docs = [article(i, T0 - timedelta(hours=20 * i)) for i in range(5)]  # 0h, 20h, 40h, 60h, 80h old
    docs += [
        {"section": "world", "key": "plain", "loc": f"https://{HOST}/world/plain"},
        article(0, T0 - timedelta(hours=1), title="Repeated: the last copy stays"),
    ]
    bad = article(9, T0)
    bad["news"]["keywords"] = "x"
    for d in docs:
        model.upsert(d)
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 1).rebuild(
        row_chunks("src", [*docs, bad])
    )
    assert counts.rejected == 1 and "news.keywords is no longer read" in app.manifest.dead_letters.all()[0].reason
    app.publisher.publish(full=True)
    window, regular, _files = served_news(app)
    assert window == model.window(clock.now) and len(window) == 3 and regular == model.locs

    apply(app, model, [{"op": "delete", "section": "world", "key": "1", "version": 2}, article(7, T0)])
    app.publisher.publish()
    window, regular, _files = served_news(app)
    assert window == model.window(clock.now) and regular == model.locs

    # A second rebuild replaces the window whole: the source is the truth.
    model = NewsModel()
    for d in docs[5:6]:
        model.upsert(d)
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 1, max_shrink=1).rebuild(
        row_chunks("src", docs[5:6])
    )
    app.publisher.max_shrink = 1
    app.publisher.publish(full=True)
    window, regular, files = served_news(app)
    assert window == {} and files == {} and regular == model.locs


def test_the_service_timers_publish_an_expiry_without_any_event(app: App) -> None:
    """What `sitemaps run` does on a quiet night: its check sees the news file due, its publish rewrites it."""
    clock = Clock()
    app.publisher.clock = clock
    model = NewsModel()
    apply(app, model, [article(1, T0 - timedelta(hours=47)), article(2, T0 - timedelta(hours=1))])
    metrics = Metrics()
    timers = Timers(app, metrics, Leader(), OffsetStore(app.manifest))
    timers.publish()
    first = app.router.current()
    timers.check()
    assert metrics.dirty._value.get() == 0
    report = status(app.manifest, app.store, app.router, app.settings.base_url, now=clock.now)
    due = (T0 - timedelta(hours=47)).timestamp() + 2 * DAY
    assert (report["news_files_due"], report["news_next_expiry"]) == (0, due)
    clock.now += 3600  # article 1 turns 48 hours old
    timers.check()
    assert metrics.dirty._value.get() == 1  # the news file: nothing else changed
    report = status(app.manifest, app.store, app.router, app.settings.base_url, now=clock.now)
    assert (report["news_files_due"], report["dirty_shards"]) == (1, 1)
    timers.publish()
    assert app.router.current() != first
    window, _regular, _files = served_news(app)
    assert window == model.window(clock.now) == {f"https://{HOST}/world/2": "Story <2>"}


def test_deep_verification_reads_the_news_files(app: App) -> None:
    app.publisher.clock = Clock()
    apply(app, NewsModel(), [article(1, T0), article(2, T0)])
    gen = app.publisher.publish().generation
    assert gen is not None
    records = app.manifest.generations.files(gen)
    verify_generation(app.store, gen, records, app.settings.limits, deep=True)
    name = "sitemap-world.news-1.xml.gz"
    records[name] = dataclasses.replace(records[name], url_count=3)  # what a damaged record would say
    with pytest.raises(VerificationError, match=f"{name} holds 2 URLs, the manifest has 3"):
        verify_generation(app.store, gen, records, app.settings.limits, deep=True)
