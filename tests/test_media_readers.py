"""Independent readers of the news and video sitemaps: what ultimate-sitemap-parser (news, over HTTP from the
root index) and the npm `sitemap` package's parser (news and video, file by file) read back must be, field for
field, the truth written out by hand here; every file is also valid against Google's XSDs with the core schema
(tests/support.py). The npm package is installed from tests/node/package-lock.json when tests/node/node_modules
is absent (`npm ci`)."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from usp.fetch_parse import SitemapFetcher
from usp.objects.sitemap import InvalidSitemap

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.serve import make_server, serve_in_thread
from sitemap_keeper.snapshot.settings import Settings
from tests.support import http_fetch, read_site

HOST = "news.example"
NODE_DIR = Path(__file__).parent / "node"
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
# (title as sent and as read: XML metacharacters, quotes, scripts, emoji; nothing named like an HTML entity,
# which usp 1.8.1 unescapes a second time: tests/test_readers.py)
TITLES = [
    "Markets <up> & \"bonds\" 'down'",
    "\u65e5\u672c\u8a9e\u306e\u898b\u51fa\u3057",
    "RTL \u05e9\u05dc\u05d5\u05dd \u2014 emoji \U0001f600",
    "Plain title",
]
# (publication_date as sent, as published): zones and a date alone
DATES = [
    ("2026-12-05T10:00:00Z", "2026-12-05T10:00:00+00:00"),
    ("2026-12-04T23:30:15+02:00", "2026-12-04T23:30:15+02:00"),
    ("2026-12-04", "2026-12-04"),
    ("2026-12-05T11:59:59.5-03:30", "2026-12-05T11:59:59-03:30"),
]
LANGUAGES = [("en", "en"), ("zh-TW", "zh-tw"), ("fra", "fra"), ("de", "de")]
OLD = ("2026-12-01T00:00:00Z", "")  # four days before T0: out of the window

NewsTruth = dict[str, tuple[str, str, str, str]]  # loc -> (publication name, language, date, title)


def news_catalog(n: int) -> tuple[list[dict[str, Any]], NewsTruth]:
    docs: list[dict[str, Any]] = []
    truth: NewsTruth = {}
    for i in range(n):
        loc = f"https://{HOST}/world/{i}?a=1&b=<{i}>"
        published_loc = f"https://{HOST}/world/{i}?a=1&b=%3C{i}%3E"
        date, date_out = DATES[i % len(DATES)] if i % 5 else OLD
        language, language_out = LANGUAGES[i % len(LANGUAGES)]
        title = TITLES[i % len(TITLES)] + f" #{i}"
        name = "The Example & Times" if i % 2 else "Ex\u00e4mple Ne\u0301ws"
        docs.append(
            {
                "section": "world",
                "key": str(i),
                "loc": loc,
                "lastmod": "2026-12-05",
                "news": {"publication": {"name": name, "language": language}, "publication_date": date, "title": title},
            }
        )
        if date_out:
            truth[published_loc] = (name, language_out, date_out, title)
    return docs, truth


@pytest.fixture(scope="module")
def npm_reader() -> Path:
    """The npm `sitemap` package, installed from the lock file if it is not yet."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the npm sitemap package's parser cannot run")
    with open(NODE_DIR / "package.json", "rb") as lock:  # one install at a time (pytest-xdist workers)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (NODE_DIR / "node_modules" / "sitemap").is_dir():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
                check=True,
                capture_output=True,
                timeout=300,
            )
    return NODE_DIR / "read_sitemap.js"


def read_with_npm(reader: Path, path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(["node", str(reader), str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    items: list[dict[str, Any]] = orjson.loads(proc.stdout)
    return items


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[App, str]]:
    """An App publishing with the address of a real server of its store as its base URL (the indexes point at
    it, so a crawler follows them), its clock at T0."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path}/m.db",
        base_url="http://127.0.0.1:8080/sitemaps/",
        allowed_hosts=(HOST,),
        max_urls=40,
        workers=1,
    )
    opener = App(settings)
    server = make_server(opener.store, opener.router, settings.base_path, "127.0.0.1", 0)
    serve_in_thread(server)
    base = f"http://127.0.0.1:{server.server_port}{settings.base_path}"
    app = App(dataclasses.replace(settings, base_url=base))
    app.publisher.clock = lambda: T0.timestamp()
    try:
        yield app, base
    finally:
        server.shutdown()
        server.server_close()
        app.close()
        opener.close()


def publish(app: App, docs: list[dict[str, Any]]) -> str:
    counts = app.applier.apply_raw([(f"t:{i}", orjson.dumps(d)) for i, d in enumerate(docs)])
    assert counts.rejected == 0, app.manifest.dead_letters.all()
    gen = app.publisher.publish().generation
    assert gen is not None
    return gen


def news_with_usp(root_url: str, caplog: pytest.LogCaptureFixture) -> NewsTruth:
    caplog.clear()
    found: NewsTruth = {}
    with caplog.at_level(logging.WARNING, logger="usp"):
        tree = SitemapFetcher(url=root_url, recursion_level=0).sitemap()
        assert not isinstance(tree, InvalidSitemap)
        assert not [s for s in tree.all_sitemaps() if isinstance(s, InvalidSitemap)]
        for page in tree.all_pages():
            story = page.news_story
            if story is None:
                continue
            assert page.url not in found
            found[page.url] = (
                story.publication_name or "",
                story.publication_language or "",
                story.publish_date.isoformat(),
                story.title,
            )
    assert not [r for r in caplog.records if r.name.startswith("usp")], [r.getMessage() for r in caplog.records]
    return found


def as_usp(truth: NewsTruth) -> NewsTruth:
    """usp parses the date: a date alone is midnight without a zone."""
    return {u: (n, lang, datetime.fromisoformat(d).isoformat(), t) for u, (n, lang, d, t) in truth.items()}


def news_with_npm(reader: Path, files: dict[str, bytes], tmp_path: Path) -> NewsTruth:
    found: NewsTruth = {}
    for name, xml in files.items():
        if ".news-" not in name:
            continue
        path = tmp_path / name.removesuffix(".gz")
        path.write_bytes(xml)
        for item in read_with_npm(reader, path):
            news = item["news"]
            assert item["url"] not in found and item["img"] == [] and item["video"] == []
            found[item["url"]] = (
                news["publication"]["name"],
                news["publication"]["language"],
                news["publication_date"],
                news["title"],
            )
    return found


def test_news_read_back_field_for_field(
    served: tuple[App, str], npm_reader: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, base = served
    docs, truth = news_catalog(120)
    publish(app, docs)
    site = read_site(http_fetch(base), base)  # every file XSD-valid, news ones with Google's news schema
    assert site.news == {u: t[3] for u, t in truth.items()}
    assert news_with_usp(base + "sitemap.xml", caplog) == as_usp(truth)
    assert news_with_npm(npm_reader, site.files, tmp_path) == truth

    # An edit of one article, one article deleted, one taken out of the news: both read the change.
    edited = dict(docs[1], version=2, news=dict(docs[1]["news"], title="Edited <title>"))
    plain = {k: v for k, v in docs[2].items() if k != "news"}
    publish(app, [edited, plain, {"op": "delete", "section": "world", "key": "3"}])
    name, language, date, _title = truth[edited["loc"].replace("<1>", "%3C1%3E")]
    truth[edited["loc"].replace("<1>", "%3C1%3E")] = (name, language, date, "Edited <title>")
    for i in (2, 3):
        del truth[f"https://{HOST}/world/{i}?a=1&b=%3C{i}%3E"]
    site = read_site(http_fetch(base), base)
    assert news_with_usp(base + "sitemap.xml", caplog) == as_usp(truth)
    assert news_with_npm(npm_reader, site.files, tmp_path) == truth


def video_catalog(n: int, day: int = 0) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Documents with zero to three videos each, and what the npm parser must read for each URL."""
    docs: list[dict[str, Any]] = []
    truth: dict[str, list[dict[str, Any]]] = {}
    for i in range(n):
        loc = f"https://{HOST}/watch/{i}"
        videos, expected = [], []
        for j in range(i % 4):
            title = TITLES[(i + j + day) % len(TITLES)][:90]
            sent: dict[str, Any] = {
                "thumbnail_loc": f"https://cdn.example/{i}/{j}.jpg?s=1&t=2",
                "title": title,
                "description": f"Video {j} of page {i} & <more>",
            }
            got: dict[str, Any] = {
                "tag": [],
                "thumbnail_loc": sent["thumbnail_loc"],
                "title": title,
                "description": sent["description"],
            }
            if j != 1:
                sent["content_loc"] = got["content_loc"] = f"https://cdn.example/{i}/{j}.mp4"
            if j != 0:
                sent["player_loc"] = got["player_loc"] = f"https://{HOST}/player?v={i}-{j}&autostart=0"
            if j == 2:
                sent |= {
                    "duration": 1 + i * 7,
                    "expiration_date": "2027-06-01T00:00:00Z",
                    "rating": (i % 50) / 10,
                    "view_count": i * 1000,
                    "publication_date": "2026-11-30",
                    "family_friendly": i % 2 == 0,
                    "restriction": {"relationship": "deny", "countries": ["us", "CA"]},
                    "platform": {"relationship": "allow", "platforms": ["web", "mobile"]},
                    "requires_subscription": False,
                    "uploader": {"name": f"Up & {i}", "info": loc + "/u"},
                    "live": True,
                    "tags": [f"tag {k} <{i}>" for k in range(i % 33)],
                }
                got |= {
                    "duration": 1 + i * 7,
                    "expiration_date": "2027-06-01T00:00:00+00:00",
                    "rating": (i % 50) / 10,
                    "view_count": i * 1000,
                    "publication_date": "2026-11-30",
                    "family_friendly": "yes" if i % 2 == 0 else "no",
                    "restriction:relationship": "deny",
                    "restriction": "US CA",
                    "platform:relationship": "allow",
                    "platform": "web mobile",
                    "requires_subscription": "no",
                    "uploader:info": loc + "/u",
                    "uploader": f"Up & {i}",
                    "live": "yes",
                    "tag": [f"tag {k} <{i}>" for k in range(i % 33)],
                }
            videos.append(sent)
            expected.append(got)
        doc: dict[str, Any] = {"section": "videos", "key": str(i), "loc": loc}
        if videos:
            doc["video"] = videos
        docs.append(doc)
        truth[loc] = expected
    return docs, truth


def videos_with_npm(reader: Path, files: dict[str, bytes], tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name, xml in files.items():
        if not name.endswith(".xml.gz"):
            continue
        path = tmp_path / name.removesuffix(".gz")
        path.write_bytes(xml)
        for item in read_with_npm(reader, path):
            assert item["url"] not in found and "news" not in item
            found[item["url"]] = item["video"]
    return found


def test_videos_read_back_field_for_field(served: tuple[App, str], npm_reader: Path, tmp_path: Path) -> None:
    app, base = served
    docs, truth = video_catalog(100)
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 1).rebuild(row_chunks("src", docs))
    assert (counts.applied, counts.rejected) == (100, 0)
    app.publisher.publish(full=True)
    site = read_site(http_fetch(base), base)  # every shard XSD-valid, with Google's video schema
    assert videos_with_npm(npm_reader, site.files, tmp_path) == truth

    # Events: some pages get other videos, some lose theirs; one event's deprecated tag is refused.
    changed, changed_truth = video_catalog(100, day=1)
    events = [dict(d, version=2) for d in changed[::3]]
    bad = dict(changed[1], version=2, video=[dict(changed[1].get("video", [{}])[0], category="Grilling")])
    counts = app.applier.apply_raw([(f"t:{i}", orjson.dumps(e)) for i, e in enumerate([*events, bad])])
    assert (counts.applied, counts.rejected) == (len(events), 1)
    assert "video[0].category is deprecated by Google" in app.manifest.dead_letters.all()[-1].reason
    truth |= {d["loc"]: changed_truth[d["loc"]] for d in events}
    app.publisher.publish()
    site = read_site(http_fetch(base), base)
    assert videos_with_npm(npm_reader, site.files, tmp_path) == truth
