"""Google News sitemaps: a document's `news` block, validated and rendered, and the news window of a section.

A section is a news section as soon as one of its documents carries a `news` block. Besides its regular shards
(where the article's URL stays), such a section publishes news files, `sitemap-<section>.news-<n>.xml.gz`, listing
only the articles published less than `WINDOW` seconds before (Google reads no older ones).

An article keeps its news shard for life, like a document keeps its shard: a new one fills its section's open news
shard, of at most `MAX_ARTICLES` articles (in or out of the window), so a news file never passes Google's 1,000
URLs and a one-article change rewrites one file. What a news file holds depends on its articles (its revision)
and on the time; it is rendered at an instant `now` and stays right until `expires_at`, the moment its oldest
article leaves the window. A publish renders a news shard again when its revision changed or when `now` has
reached the live file's `expires_at` (kept per generation in `news_files`): articles age out on time, with no
event, at the first publish after they leave the window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from sitemap_keeper.snapshot.document import InvalidDocument, check_text, lastmod_timestamp, normalise_lastmod
from sitemap_keeper.snapshot.manifest import Manifest, news_rows
from sitemap_keeper.snapshot.manifest.records import FileRecord
from sitemap_keeper.snapshot.render import escape

NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
WINDOW = 2 * 24 * 3600.0  # seconds: Google News reads articles published in the last two days
MAX_ARTICLES = 1_000  # Google's limit of URLs per news sitemap file
LANGUAGE_RE = re.compile(r"zh-cn|zh-tw|[a-z]{2,3}")  # ISO 639, as Google's XSD says (lower case)
FIELDS = frozenset({"publication", "publication_date", "title"})
PUBLICATION_FIELDS = frozenset({"name", "language"})
# In Google's XSD, no longer read by Google News (its documentation dropped them): refused, so a site learns it.
DEPRECATED = frozenset({"access", "genres", "keywords", "stock_tickers"})
# A dot never comes from a section (snapshot/naming.py): no section's shard or index file has this name.
FRACTION_RE = re.compile(r"\.\d+(?=[+-]\d\d:\d\d$)")
NEWS_RE = re.compile(r"sitemap-([a-z0-9_-]{1,64})\.news-(\d+)\.xml\.gz")
NEWS_URLSET_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:news="{NEWS_NS}">\n'
)


class Article(NamedTuple):
    """A document's news entry: its news sitemap `<url>` fragment, and when the article was published."""

    loc: str
    published: str  # normalised like a lastmod
    published_ts: float
    xml: str


def news_name(section: str, shard_no: int) -> str:
    return f"sitemap-{section}.news-{shard_no}.xml.gz"


def parse_news_name(name: str) -> tuple[str, int] | None:
    m = NEWS_RE.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def parse_news(value: Any, loc: str) -> Article:
    """The Article of a document's `news` block (its `loc` already checked), or InvalidDocument naming the field."""
    if not isinstance(value, dict):
        raise InvalidDocument(f"news must be an object, got {type(value).__name__}")
    _known(value, FIELDS, "news")
    publication = value.get("publication")
    if not isinstance(publication, dict):
        raise InvalidDocument("news.publication must be an object with a name and a language")
    _known(publication, PUBLICATION_FIELDS, "news.publication")
    name = _required_text(publication.get("name"), "news.publication.name")
    language = publication.get("language")
    if not isinstance(language, str) or not LANGUAGE_RE.fullmatch(language.lower()):
        raise InvalidDocument(
            f"news.publication.language must be an ISO 639 code of 2 or 3 letters (or zh-cn, zh-tw), got {language!r}"[
                :200
            ]
        )
    try:
        published = normalise_lastmod(value.get("publication_date"))
    except InvalidDocument as exc:
        raise InvalidDocument(str(exc).replace("lastmod", "news.publication_date", 1)) from None
    if published is None:
        raise InvalidDocument("news.publication_date is required")
    published = FRACTION_RE.sub("", published)  # whole seconds: some readers (npm sitemap 9) refuse a fraction
    title = _required_text(value.get("title"), "news.title")
    xml = (
        f"<url><loc>{escape(loc)}</loc><news:news><news:publication><news:name>{escape(name)}</news:name>"
        f"<news:language>{language.lower()}</news:language></news:publication>"
        f"<news:publication_date>{published}</news:publication_date>"
        f"<news:title>{escape(title)}</news:title></news:news></url>\n"
    )
    stamp = lastmod_timestamp(published)
    assert stamp is not None
    return Article(loc, published, stamp, xml)


def _known(obj: dict[str, Any], fields: frozenset[str], where: str) -> None:
    for field in obj:
        if field in DEPRECATED:
            raise InvalidDocument(f"{where}.{field} is no longer read by Google News (deprecated): remove it")
        if field not in fields:
            raise InvalidDocument(f"{where} has an unknown field {field!r}; known: {', '.join(sorted(fields))}"[:300])


def _required_text(value: Any, field: str) -> str:
    text = check_text(value, field)
    if text is None or not text.strip():
        raise InvalidDocument(f"{field} is required (a non-empty string)")
    return text


# -- the manifest's news window --------------------------------------------------------------------------------

Change = tuple[str, str, Article | None]
"""(section, key, article): a document applied with this article, or without one (upserted without news, or
deleted)."""


def capacity(max_urls: int) -> int:
    """Articles per news shard, under a site's URL limit per file (tests set tiny ones)."""
    return min(MAX_ARTICLES, max_urls)


def write_changes(
    manifest: Manifest, conn: Connection, changes: Iterable[Change], revision: int, max_urls: int = MAX_ARTICLES
) -> None:
    """Apply a batch's news changes (the last one per document wins); every news shard they touch gets
    `revision`; a news shard gets at most `capacity(max_urls)` articles."""
    last: dict[tuple[str, str], Article | None] = {(s, k): a for s, k, a in changes}
    if not last:
        return
    by_section: dict[str, dict[str, Article | None]] = {}
    for (section, key), article in last.items():
        by_section.setdefault(section, {})[key] = article
    for section, articles in sorted(by_section.items()):
        _write_section(manifest, conn, section, articles, revision, capacity(max_urls))


def _write_section(
    manifest: Manifest, conn: Connection, section: str, articles: Mapping[str, Article | None], revision: int, size: int
) -> None:
    held = news_rows.shards_of(conn, section, sorted(articles))
    counts = news_rows.shard_counts(conn, section)
    open_no = max(counts, default=1)
    touched: set[int] = set()
    rows: list[tuple[Any, ...]] = []
    gone: list[str] = []
    for key in articles:  # in the order of the events: new articles fill the open shard as they come
        article, shard_no = articles[key], held.get(key)
        if article is None:
            if shard_no is not None:
                gone.append(key)
                counts[shard_no] -= 1
                touched.add(shard_no)
            continue
        if shard_no is None:
            if counts.get(open_no, 0) >= size:
                open_no += 1
            shard_no = open_no
            counts[shard_no] = counts.get(shard_no, 0) + 1
        touched.add(shard_no)
        rows.append((section, key, shard_no, article.loc, article.published, article.published_ts, article.xml))
    news_rows.write_section(manifest, conn, section, rows, gone, [(n, counts[n], revision) for n in sorted(touched)])


@dataclass(frozen=True, slots=True)
class NewsShard:
    section: str
    shard_no: int
    revision: int

    @property
    def name(self) -> str:
        return news_name(self.section, self.shard_no)


@dataclass(slots=True)
class NewsPlan:
    render: list[NewsShard]
    copy: list[FileRecord]
    dropped: list[str]  # news files of the live generation with no article left in the window
    next_expiry: float | None  # when the first copied file goes stale: the publish timer's next news work


def plan_news(
    manifest: Manifest, live: str | None, base_files: Mapping[str, FileRecord], now: float, full: bool = False
) -> NewsPlan:
    """Which news files to render at `now`, which to copy from `live`, which to leave out."""
    cut = now - WINDOW
    with manifest.read() as conn:
        revisions = news_rows.revisions(conn)
        current = news_rows.shards_with_articles_after(conn, cut)
        expiries = {} if live is None else news_rows.expiries_of(conn, live)
    result = NewsPlan([], [], [], None)
    names = set()
    for section, shard_no in current:
        shard = NewsShard(section, shard_no, revisions.get((section, shard_no), 0))
        names.add(shard.name)
        old = base_files.get(shard.name)
        expires = expiries.get(shard.name)
        if not full and old is not None and old.revision == shard.revision and expires is not None and now < expires:
            result.copy.append(old)
            result.next_expiry = min(expires, result.next_expiry or expires)
        else:
            result.render.append(shard)
    result.dropped = sorted(name for name in base_files if parse_news_name(name) and name not in names)
    return result


@dataclass(slots=True)
class RenderedNews:
    shard: NewsShard
    url_count: int
    lastmod: str  # the newest publication date: the index's <lastmod>
    lastmod_ts: float
    expires_at: float  # when its oldest article leaves the window
    data: bytes  # the uncompressed file
    revision: int  # the shard's, read with its articles


def render_news(manifest: Manifest, shard: NewsShard, now: float) -> RenderedNews | None:
    """One news file as it must read at `now`; None when no article of the shard is in the window."""
    with manifest.read() as conn:
        revision = news_rows.shard_revision(conn, shard.section, shard.shard_no)
        rows = news_rows.articles_after(conn, shard.section, shard.shard_no, now - WINDOW)
    if not rows or revision is None:
        return None
    newest = max(rows, key=lambda r: r.published_ts)
    data = (NEWS_URLSET_OPEN + "".join(r.xml for r in rows) + "</urlset>\n").encode()
    return RenderedNews(
        shard,
        len(rows),
        newest.published,
        newest.published_ts,
        min(r.published_ts for r in rows) + WINDOW,
        data,
        revision,
    )


# -- the rebuild ------------------------------------------------------------------------------------------------

# A news_articles_staging row, in its columns' order (`schema.news_articles_staging`): (section, key, shard_no,
# loc, published, published_ts, xml, seq). A plain tuple: it goes to the database as it is, one per article of a
# rebuild.
StagedArticle = tuple[str, str, int, str, str, float, str, int]


@dataclass(slots=True)
class OpenNewsShard:
    """A section's news shard being filled by a rebuild."""

    shard_no: int = 1
    articles: int = 0


class Placer:
    """A rebuild's news shards: each section's articles fill its news shards in source order."""

    def __init__(self, max_urls: int) -> None:
        self.size = capacity(max_urls)
        self.open: dict[str, OpenNewsShard] = {}
        self.seq = 0

    def row(self, section: str, key: str, article: Article) -> StagedArticle:
        st = self.open.get(section)
        if st is None:
            st = self.open[section] = OpenNewsShard()
        if st.articles >= self.size:
            st.shard_no += 1
            st.articles = 0
        st.articles += 1
        self.seq += 1
        return (section, key, st.shard_no, article.loc, article.published, article.published_ts, article.xml, self.seq)
