"""The pages for people (snapshot/pages.py): the status page and the views of published files.

Read three ways: a file's entries against lxml's reading of the same file; the pages over HTTP from
`sitemaps serve` (SQLite and PostgreSQL) and from the service's port; and in headless Chromium, which must
build the expected tables and show hostile titles as text (tests/browser.py; screenshots under tmp_path).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree
from lxml import html as lxml_html

from sitemap_keeper.snapshot.browse import NotASitemap, _own_page, _parsed_page, inflated, read_page
from sitemap_keeper.snapshot.document import Alternate, Image
from sitemap_keeper.snapshot.html import link
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import Generation
from sitemap_keeper.snapshot.pages import PER_PAGE, Pages, file_body
from sitemap_keeper.snapshot.render import URLSET_CLOSE, URLSET_OPEN, fragment
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.routers.local import LocalRouter
from sitemap_keeper.snapshot.stores.local import LocalStore
from tests import browser
from tests.service_helpers import ServiceProcess, service_env
from tests.services.ports import wait_for
from tests.support import NS, cli, http_fetch, read_site

HOST = "librer.io"
BASE = "http://127.0.0.1:8080/sitemaps/"
SCRIPT_TITLE = "<script>alert(1)</script>"
IMG_TITLE = '"><img src=x onerror=alert(2)>'
SCRIPT_LETTER = "<script>alert(3)</script> is not JSON"
BOOKS = 1000  # at SITEMAPS_MAX_URLS=600: shards of 600 (two pages) and 400
AUTHORS = 120

# -- a sitemap with every kind of entry child -----------------------------------------------------------------

NEWS_VIDEO = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:video="http://www.google.com/schemas/sitemap-video/1.1">
<url><loc>https://librer.io/a?x=1&amp;y=2</loc><lastmod>2024-06-01</lastmod><changefreq>daily</changefreq>
 <priority>0.5</priority>
 <image:image><image:loc>https://cdn.librer.io/a.jpg</image:loc><image:title>&lt;script&gt;alert(1)&lt;/script&gt;</image:title>
  <image:caption>cap</image:caption></image:image>
 <xhtml:link rel="alternate" hreflang="de" href="https://librer.io/de/a"/>
 <news:news><news:publication><news:name>Le Monde</news:name><news:language>fr</news:language></news:publication>
  <news:publication_date>2024-06-01</news:publication_date>
  <news:title>&lt;b&gt;Hot&lt;/b&gt; news</news:title></news:news>
 <video:video><video:thumbnail_loc>https://cdn.librer.io/t.jpg</video:thumbnail_loc><video:title>Clip</video:title>
  <video:player_loc allow_embed="yes">https://librer.io/player</video:player_loc></video:video>
 <odd xmlns="urn:x-odd">thing</odd>
</url>
<url><loc>javascript:alert(4)</loc></url>
</urlset>
"""


def urlset(n: int) -> bytes:
    body = "".join(
        f"<url><loc>https://{HOST}/p/{i}</loc><lastmod>2024-06-{i % 28 + 1:02d}</lastmod></url>\n" for i in range(n)
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS["sm"]}">\n{body}</urlset>\n').encode()


def test_every_child_of_url_is_read() -> None:
    page = read_page(gzip.compress(NEWS_VIDEO.encode()), 0, 10)
    assert page.kind == "urlset" and page.total == 2 and [e.number for e in page.entries] == [1, 2]
    a = page.entries[0]
    assert a.simple == {
        "loc": "https://librer.io/a?x=1&y=2",
        "lastmod": "2024-06-01",
        "changefreq": "daily",
        "priority": "0.5",
    }
    assert [(i.loc, i.title, i.caption) for i in a.images] == [("https://cdn.librer.io/a.jpg", SCRIPT_TITLE, "cap")]
    assert [(x.hreflang, x.href) for x in a.alternates] == [("de", "https://librer.io/de/a")]
    assert [(f.path, f.value, f.attributes) for f in a.fields] == [
        ("news:news/news:publication/news:name", "Le Monde", ()),
        ("news:news/news:publication/news:language", "fr", ()),
        ("news:news/news:publication_date", "2024-06-01", ()),
        ("news:news/news:title", "<b>Hot</b> news", ()),
        ("video:video/video:thumbnail_loc", "https://cdn.librer.io/t.jpg", ()),
        ("video:video/video:title", "Clip", ()),
        ("video:video/video:player_loc", "https://librer.io/player", (("allow_embed", "yes"),)),
        ("odd", "thing", ()),  # its default namespace is declared without a prefix
    ]
    assert page.entries[1].simple == {"loc": "javascript:alert(4)"} and not page.entries[1].fields


def test_pages_match_lxml() -> None:
    data = urlset(1203)
    truth = [
        (u.findtext("sm:loc", namespaces=NS), u.findtext("sm:lastmod", namespaces=NS))
        for u in etree.fromstring(data).findall("sm:url", NS)
    ]
    for compressed in (gzip.compress(data), data):
        seen = []
        for first in range(0, 1203, PER_PAGE):
            page = read_page(compressed, first, PER_PAGE)
            assert page.total == 1203
            seen += [(e.simple["loc"], e.simple.get("lastmod")) for e in page.entries]
        assert seen == truth
    assert read_page(data, 1203, PER_PAGE).entries == []


def own_shard(n: int, title: str = "t") -> bytes:
    frags = [
        fragment(
            f"https://{HOST}/p/{i}?a=1&b=<{i}>",
            f"2024-06-{i % 28 + 1:02d}",
            None,
            None,
            [Image(f"https://cdn.{HOST}/{i}.jpg", None, f"{title} {i} {SCRIPT_TITLE}")],
            [Alternate("de", f"https://{HOST}/de/{i}")],
        )
        for i in range(n)
    ]
    return gzip.compress((URLSET_OPEN + "".join(frags) + URLSET_CLOSE).encode())


@pytest.mark.parametrize("n", [0, 1, 499, 500, 501, 1203])
def test_own_shards_read_line_by_line_as_expat_reads_them(n: int) -> None:
    """A shard this service wrote is read by counting lines, parsing only the page's: the same as expat's
    reading of the whole file, page by page; a line that is not one whole <url> sends it the long way."""
    for title in ("t", "two\nlines"):
        data = own_shard(n, title)
        for first in range(0, max(n, 1) + PER_PAGE, PER_PAGE):
            fast, slow = read_page(data, first, PER_PAGE), _parsed_page(inflated(data), first, PER_PAGE)
            assert (fast.kind, fast.total, fast.entries) == (slow.kind, slow.total, slow.entries)
            assert len(fast.entries) == max(0, min(PER_PAGE, n - first))
        assert (_own_page(data, 0, PER_PAGE) is not None) == (title == "t" or n == 0)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"<html><body>hi</body></html>", "the root element is html"),
        (
            gzip.compress(b"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><url>")[:-12],
            "not a readable gzip file",
        ),
        (b"<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><url></urlset>", "not well-formed XML"),
        (b"", "not well-formed XML"),
    ],
    ids=["html", "truncated-gzip", "malformed", "empty"],
)
def test_what_is_not_a_sitemap_says_why(data: bytes, why: str) -> None:
    with pytest.raises(NotASitemap, match=why):
        read_page(data, 0, 10)


def test_other_fields_render_as_text() -> None:
    """News, video and unknown fields reach the page as name/value text: hostile values stay text."""
    page = read_page(NEWS_VIDEO.encode(), 0, 10)
    gen = Generation("g1", "live", None, 0.0, 0.0, 2, 1, 1, 0)
    doc = lxml_html.fromstring(file_body(gen, {}, "x.xml", page, 1, 1))
    rows = doc.xpath('//table[@id="entries"]/tbody/tr')
    assert len(rows) == 2
    other = [li.text_content() for li in rows[0].xpath("td[8]//li")]
    assert "news:news/news:title: <b>Hot</b> news" in other
    assert "video:video/video:player_loc [allow_embed=yes]: https://librer.io/player" in other
    # The only <b> elements are the field names the page puts there: "<b>Hot</b>" stayed text.
    assert {b.text_content() for b in doc.xpath("//b")} == {f.path for f in page.entries[0].fields}
    assert not doc.xpath("//script")
    assert doc.xpath('//li[contains(., "title: <script>alert(1)</script>")]')
    assert rows[1].xpath("td[2]")[0].text_content() == "javascript:alert(4)"  # shown, but not as a link
    assert [a.get("href") for a in doc.xpath("//a") if not a.get("href").startswith(("https:", "/"))] == []


def test_links_only_to_our_paths_and_http() -> None:
    assert link("javascript:alert(1)", "x") == "x"
    assert link("//evil.example/", "x") == "x"
    assert link('https://librer.io/a?b=1&c="', "t<") == '<a href="https://librer.io/a?b=1&amp;c=&quot;">t&lt;</a>'
    assert link("/_view/a", "a") == '<a href="/_view/a">a</a>'


# -- a published site, served ---------------------------------------------------------------------------------


def catalog_line(i: int, version: int = 1, day: int = 1) -> bytes:
    section = "books" if i < BOOKS else "authors"
    title = {3: SCRIPT_TITLE, 4: IMG_TITLE}.get(i, f"Book {i}")
    return orjson.dumps(
        {
            "section": section,
            "key": str(i),
            "loc": f"https://{HOST}/{section}/{i}",
            "lastmod": f"2024-06-{day:02d}T08:30:00+00:00",
            "version": version,
            "images": [{"loc": f"https://cdn.{HOST}/{i}.jpg", "title": title}],
            "alternates": [{"hreflang": "de", "href": f"https://{HOST}/de/{i}"}],
        }
    )


def site_env(data: Path, database_url: str) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(data),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "600",
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }


def build_site(tmp: Path, env: dict[str, str]) -> None:
    """Two publishes: a rebuild (with one refused line), then 30 books with a new lastmod and 5 new authors."""
    lines = [catalog_line(i) for i in range(BOOKS + AUTHORS)]
    (tmp / "catalog.jsonl").write_bytes(b"\n".join([*lines[:10], SCRIPT_LETTER.encode(), *lines[10:]]) + b"\n")
    cli("rebuild", "--source", str(tmp / "catalog.jsonl"), env=env)
    changes = [catalog_line(i, 2, 2) for i in range(30)]
    changes += [catalog_line(i) for i in range(BOOKS + AUTHORS, BOOKS + AUTHORS + 5)]
    (tmp / "changes.jsonl").write_bytes(b"\n".join(changes) + b"\n")
    cli("apply", str(tmp / "changes.jsonl"), env=env)
    cli("publish", env=env)


class Served:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sitemap_keeper", "serve", "--port", "0", *args],
            env={**__import__("os").environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", self.proc.stdout.readline())
        assert m
        self.root = f"http://127.0.0.1:{m.group(1)}"

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        try:
            with urllib.request.urlopen(self.root + path, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[Served, dict[str, str]]]:
    env = site_env(tmp_path / "data", database_url)
    build_site(tmp_path, env)
    s = Served(env)
    yield s, env
    s.stop()


def status_json(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(cli("status", "--json", env=env).stdout))


def test_status_page_shows_what_status_json_says(served: tuple[Served, dict[str, str]]) -> None:
    server, env = served
    code, headers, body = server.get("/_status")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert headers["X-Content-Type-Options"] == "nosniff"
    doc = lxml_html.fromstring(body)
    info = status_json(env)
    summary = {
        tr.xpath("td[1]")[0].text_content(): tr.xpath("td[2]")[0].text_content()
        for tr in doc.xpath('//table[@id="summary"]/tbody/tr')
    }
    headings = {h.text_content() for h in doc.xpath("//h2")}
    for key, value in info.items():  # every key of status --json is on the page
        if isinstance(value, dict | list):
            assert key in ("sections", "last_diff") or key.replace("_", " ").capitalize() in headings, key
        else:
            assert key in summary, key
    assert summary["live_generation"] == info["live_generation"] and summary["urls"] == str(info["urls"])
    sections = [[td.text_content() for td in tr.xpath("td")] for tr in doc.xpath('//table[@id="sections"]/tbody/tr')]
    assert sections == [[n, str(s["urls"]), str(s["shards"])] for n, s in info["sections"].items()]
    assert sections == [["authors", str(AUTHORS + 5), "1"], ["books", str(BOOKS), "2"]]
    publishes = doc.xpath('//table[@id="publishes"]/tbody/tr')
    assert len(publishes) == 2
    newest = [td.text_content() for td in publishes[0].xpath("td")]
    assert newest[0] == f"{info['live_generation']} (live)"
    assert newest[6].startswith("+5 added, -0 removed, ~30 new lastmod")
    assert "authors: +5 -0 ~0" in newest[6] and "books: +0 -0 ~30" in newest[6]
    oldest = [td.text_content() for td in publishes[1].xpath("td")]
    assert oldest[1] == "retired" and oldest[6].startswith(f"+{BOOKS + AUTHORS} added")
    letters = [[td.text_content() for td in tr.xpath("td")] for tr in doc.xpath('//table[@id="dead-letters"]/tbody/tr')]
    assert len(letters) == 1 and letters[0][2] == "catalog.jsonl:11" and letters[0][4] == SCRIPT_LETTER
    assert not doc.xpath("//script")
    assert "no event source here" in body  # no lag under `sitemaps serve`


def test_views_list_every_url_of_the_site(served: tuple[Served, dict[str, str]]) -> None:
    server, _env = served
    truth = read_site(http_fetch(server.root + "/sitemaps/"), BASE)
    code, _h, body = server.get("/_view/sitemap.xml")
    assert code == 200
    index = lxml_html.fromstring(body)
    shards = [a.get("href") for a in index.xpath('//table[@id="entries"]//a[text()="view"]')]
    assert len(shards) == 3
    seen: dict[str, str] = {}
    for href in shards:
        pages = 1
        page = 1
        while page <= pages:
            code, _h, body = server.get(f"{href}&page={page}")
            assert code == 200, body
            doc = lxml_html.fromstring(body)
            pages = int(re.findall(r"page \d+ of (\d+)", doc.xpath("//p")[0].text_content())[0])
            for tr in doc.xpath('//table[@id="entries"]/tbody/tr'):
                loc, lastmod = (td.text_content() for td in tr.xpath("td")[1:3])
                assert loc not in seen
                seen[loc] = lastmod
            page += 1
    assert seen == truth.urls


def test_bad_view_requests_say_what_is_wrong(served: tuple[Served, dict[str, str]]) -> None:
    server, env = served
    live = status_json(env)["live_generation"]
    cases = {
        "/_view/sitemap-nope-1.xml.gz": (404, f"{live} has no file sitemap-nope-1.xml.gz"),
        "/_view/..%2Fmanifest.db": (404, f"{live} has no file ../manifest.db"),
        "/_view/sitemap.xml?page=0": (400, "page must be a whole number from 1, got '0'"),
        "/_view/sitemap.xml?page=x": (400, "page must be a whole number from 1, got 'x'"),
        "/_view/sitemap.xml?page=2": (404, "sitemap.xml has 1 page(s) of 500 entries, not 2"),
        "/_view/sitemap.xml?generation=20200101-000000-000-0000": (
            404,
            "generation 20200101-000000-000-0000 is not recorded in this manifest",
        ),
    }
    for path, (want_code, message) in cases.items():
        code, _h, body = server.get(path)
        assert (code, lxml_html.fromstring(body).xpath('//p[@id="error"]')[0].text_content()) == (want_code, message), (
            path
        )
    assert server.get("/sitemaps/sitemap.xml")[0] == 200  # the published files are still served
    assert server.get("/sitemaps/_status")[0] == 404


def test_pages_can_be_turned_off(tmp_path: Path) -> None:
    env = site_env(tmp_path / "data", f"sqlite:///{tmp_path / 'manifest.db'}")
    server = Served(env, "--no-pages")
    try:
        assert server.get("/_status")[0] == 404
    finally:
        server.stop()


def test_status_page_on_the_service_port(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(catalog_line(i) for i in range(50)) + b"\n")
    svc = ServiceProcess(["run", "--follow", str(path)], service_env(tmp_path, database_url), tmp_path / "service.log")
    try:
        wait_for(lambda: svc.get("/_view/sitemap.xml")[0] == 200, 60, "the first publish")
        process = wait_for(
            lambda: p if (p := process_rows(svc))["applied_this_run"] == "50" else None, 30, "the whole file applied"
        )
        assert process["ready"] == "yes"
        assert process["lag"] == "—"  # a followed file does not count its events: unknown, not 0
        assert process["since_main_loop_turned_seconds"] in {f"{n} s" for n in range(10)}
        assert svc.get("/metrics")[0] == 200 and svc.get("/readyz") == (200, "ok\n")
        assert svc.get("/nothing")[0] == 404
    finally:
        assert svc.stop()[0] == 0


def process_rows(svc: ServiceProcess) -> dict[str, str]:
    code, body = svc.get("/_status")
    assert code == 200
    heading = lxml_html.fromstring(body).xpath('//h2[text()="This process"]')[0]
    return {
        tr.xpath("td[1]")[0].text_content(): tr.xpath("td[2]")[0].text_content()
        for tr in heading.getnext().xpath("tbody/tr")
    }


# -- in a real browser ----------------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(browser.CHROMIUM is None, reason=browser.SKIP_REASON)


@pytest.fixture(scope="module")
def browsed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    tmp = tmp_path_factory.mktemp("browsed")
    env = site_env(tmp / "data", f"sqlite:///{tmp / 'manifest.db'}")
    build_site(tmp, env)
    s = Served(env)
    yield s, tmp
    s.stop()


def look(server: Served, tmp: Path, path: str, shot: str) -> Any:
    """The DOM Chromium built for the page, after checking its screenshot is a real, non-blank picture."""
    png = browser.read_png(browser.screenshot(server.root + path, tmp / f"{shot}.png", tmp / "profile"))
    assert (png.width, png.height) == (browser.WIDTH, browser.HEIGHT)
    assert len(png.colours()) > 8, f"{shot}.png is blank"
    dom = lxml_html.fromstring(browser.dump_dom(server.root + path, tmp / "profile"))
    assert not dom.xpath("//script") and not dom.xpath("//img") and not dom.xpath("//*[@onerror]")
    return dom


@needs_chromium
def test_status_page_in_a_browser(browsed: tuple[Served, Path]) -> None:
    server, tmp = browsed
    dom = look(server, tmp, "/_status", "status")
    assert dom.xpath("//h1")[0].text_content() == "Sitemaps status"
    assert len(dom.xpath('//table[@id="sections"]/tbody/tr')) == 2
    assert len(dom.xpath('//table[@id="publishes"]/tbody/tr')) == 2
    letters = dom.xpath('//table[@id="dead-letters"]/tbody/tr/td[5]')
    assert [td.text_content() for td in letters] == [SCRIPT_LETTER]


@needs_chromium
def test_shard_view_in_a_browser(browsed: tuple[Served, Path]) -> None:
    server, tmp = browsed
    dom = look(server, tmp, "/_view/sitemap-books-1.xml.gz", "shard-page-1")
    rows = dom.xpath('//table[@id="entries"]/tbody/tr')
    assert len(rows) == PER_PAGE
    titles = {li.text_content().split("title: ", 1)[1] for li in dom.xpath('//table[@id="entries"]//td[6]//li')}
    assert SCRIPT_TITLE in titles and IMG_TITLE in titles
    dom = look(server, tmp, "/_view/sitemap-books-1.xml.gz?page=2", "shard-page-2")
    assert len(dom.xpath('//table[@id="entries"]/tbody/tr')) == 600 - PER_PAGE


@needs_chromium
def test_index_view_in_a_browser(browsed: tuple[Served, Path]) -> None:
    server, tmp = browsed
    dom = look(server, tmp, "/_view/sitemap.xml", "index")
    views = [a.get("href") for a in dom.xpath('//table[@id="entries"]//a[text()="view"]')]
    assert [v.split("?")[0] for v in views] == [
        f"/_view/sitemap-{n}.xml.gz" for n in ("authors-1", "books-1", "books-2")
    ]


def test_a_failing_router_gives_a_one_line_503(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(LocalRouter):
        def current(self) -> str | None:
            raise RouterError("the Kubernetes API said 403")  # a fault injected where the real router fails

    manifest = Manifest.open(f"sqlite:///{tmp_path / 'manifest.db'}")
    manifest.create()
    try:
        pages = Pages(manifest, LocalStore(tmp_path / "generations"), Broken(tmp_path), BASE)
        for path in ("/_status", "/_view/sitemap.xml"):
            page = pages.respond(path)
            assert page is not None and page.status == 503, path
            message = lxml_html.fromstring(page.body).xpath('//p[@id="error"]')[0].text_content()
            assert message == "the page could not be built: RouterError (the log says more)"
        assert "RouterError: the Kubernetes API said 403" in caplog.text
        assert pages.respond("/sitemap.xml") is None  # not a page: the caller's own path
    finally:
        manifest.close()
