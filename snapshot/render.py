"""Sitemap XML: a document's <url> fragment, shard files and index files.

Fragments are rendered once, when a document is accepted, and kept in the manifest; a shard is then just
its fragments between a header and a footer, which is what makes rewriting a shard cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib

from sitemap_keeper.snapshot.document import (
    Alternate,
    Document,
    Image,
    InvalidDocument,
    Rules,
    document_fields,
    lastmod_timestamp,
)
from sitemap_keeper.snapshot.video import Listed, Video, parse_videos

FastRow = Callable[[Any, frozenset[str], bool, int | None], "DocumentRow | None"]
FastRows = Callable[
    [list[Any], int, frozenset[str], Callable[[bytes], Any], dict[str, list[tuple[Any, ...]]], bool, int | None], int
]
fast_row: FastRow | None
fast_rows: FastRows | None
try:  # the common document in C (snapshot/_fastrow.c); without a C compiler at install the Python code does it all
    from sitemap_keeper.snapshot._fastrow import row as fast_row
    from sitemap_keeper.snapshot._fastrow import rows as fast_rows
except ImportError:  # pragma: no cover - every supported install builds it
    fast_row = fast_rows = None

URLSET_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    ' xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'
    ' xmlns:xhtml="http://www.w3.org/1999/xhtml"'
    ' xmlns:video="http://www.google.com/schemas/sitemap-video/1.1">\n'
)
URLSET_CLOSE = "</urlset>\n"
INDEX_OPEN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
)
INDEX_CLOSE = "</sitemapindex>\n"
# What a shard costs beyond its fragments, counted against the uncompressed size limit.
SHARD_OVERHEAD = len((URLSET_OPEN + URLSET_CLOSE).encode())
GZIP_LEVEL = 1  # isal's fastest: files a little larger for far less CPU (docs/performance.md)
GZIP_WBITS = 31  # gzip framing: header (mtime 0) and trailer around the deflate stream
PIECE = 1_000  # fragments per piece of a shard file (about 0.3 to 1.4 MB)

# '\r' too: a parser would read a literal one back as '\n' (XML end-of-line handling).
ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\r": "&#13;"}
_ESCAPES = str.maketrans(ESCAPES)


def escape(text: str) -> str:
    # Chained `in` tests run in C; most texts need no escaping at all.
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


DocumentRow = tuple[str, str, int | None, str, str | None, float | None, int, str]
"""(section, key, version, loc, lastmod, lastmod_ts, size, xml): a document as the manifest stores it."""


def document_row(obj: Any, rules: Rules) -> DocumentRow:
    """Validate a decoded JSON object and render it, or raise InvalidDocument naming the problem.

    A document of the common shape is done by `fast_row` (C: the rebuild's and the apply path's workers spend
    most of their time here); this code is the reference it must match, and it decides every other document:
    repairs, refusals and their reasons.
    """
    if fast_row is not None:
        row: DocumentRow | None = fast_row(obj, rules.allowed_hosts, not rules.ignore_extra_fields, rules.max_size)
        if row is not None:
            return row
    section, key, loc, lastmod, changefreq, priority, images, alternates, version = document_fields(obj, rules)
    xml = fragment(loc, lastmod, changefreq, priority, images, alternates)
    videos = obj.get("video")  # never taken by `fast_row`
    if videos is not None:
        xml = xml[: -len("</url>\n")] + "".join(map(video_element, parse_videos(videos, loc))) + "</url>\n"
    # isascii() is O(1) on CPython's strings: most fragments need no encoding to be measured.
    size = len(xml) if xml.isascii() else len(xml.encode())
    if rules.max_size is not None and size > rules.max_size:
        # Accepted, it would make every publish of its shard fail (the shard over the byte limit).
        raise InvalidDocument(
            f"the document's <url> element is {size} bytes, more than one shard can hold "
            f"({rules.max_size} bytes besides the shard's header, SITEMAPS_MAX_BYTES)"
        )
    return (section, key, version, loc, lastmod, lastmod_timestamp(lastmod), size, xml)


def url_fragment(doc: Document) -> str:
    """The <url> element of one document, on one line."""
    return fragment(doc.loc, doc.lastmod, doc.changefreq, doc.priority, doc.images, doc.alternates)


def fragment(
    loc: str,
    lastmod: str | None,
    changefreq: str | None,
    priority: float | None,
    images: Iterable[Image],
    alternates: Iterable[Alternate],
) -> str:
    xml = f"<url><loc>{escape(loc)}</loc>"
    if lastmod is not None:
        xml += f"<lastmod>{lastmod}</lastmod>"
    if changefreq is not None:
        xml += f"<changefreq>{changefreq}</changefreq>"
    if priority is not None:
        xml += f"<priority>{priority:.1f}</priority>"
    for image in images:
        xml += f"<image:image><image:loc>{escape(image.loc)}</image:loc>"
        # Google's image schema orders the children: loc, caption, geo_location, title, license.
        if image.caption is not None:
            xml += f"<image:caption>{escape(image.caption)}</image:caption>"
        if image.title is not None:
            xml += f"<image:title>{escape(image.title)}</image:title>"
        xml += "</image:image>"
    for alt in alternates:
        xml += f'<xhtml:link rel="alternate" hreflang="{alt.hreflang}" href="{escape(alt.href)}"/>'
    return xml + "</url>\n"


def video_element(v: Video) -> str:
    """A <video:video> element, its children in the order of Google's XSD."""
    xml = (
        f"<video:video><video:thumbnail_loc>{escape(v.thumbnail_loc)}</video:thumbnail_loc>"
        f"<video:title>{escape(v.title)}</video:title>"
        f"<video:description>{escape(v.description)}</video:description>"
    )
    for tag, value in (
        ("content_loc", v.content_loc),
        ("player_loc", v.player_loc),
        ("duration", v.duration),
        ("expiration_date", v.expiration_date),
        ("rating", v.rating),
        ("view_count", v.view_count),
        ("publication_date", v.publication_date),
    ):
        if value is not None:
            xml += f"<video:{tag}>{escape(str(value))}</video:{tag}>"
    xml += "".join(f"<video:tag>{escape(tag)}</video:tag>" for tag in v.tags)
    if v.family_friendly is not None:
        xml += f"<video:family_friendly>{v.family_friendly}</video:family_friendly>"
    xml += _listed("restriction", v.restriction)
    if v.requires_subscription is not None:
        xml += f"<video:requires_subscription>{v.requires_subscription}</video:requires_subscription>"
    if v.uploader is not None:
        info = f' info="{escape(v.uploader_info)}"' if v.uploader_info is not None else ""
        xml += f"<video:uploader{info}>{escape(v.uploader)}</video:uploader>"
    xml += _listed("platform", v.platform)
    if v.live is not None:
        xml += f"<video:live>{v.live}</video:live>"
    return xml + "</video:video>"


def _listed(tag: str, listed: Listed | None) -> str:
    if listed is None:
        return ""
    return f'<video:{tag} relationship="{listed.relationship}">{" ".join(listed.values)}</video:{tag}>'


def shard_pieces(fragments: Sequence[str]) -> Iterator[bytes]:
    """A shard file a piece at a time: the header, whole <url> fragments, the footer.

    Encoded, checked and compressed piece by piece, a shard of 50 MiB is never held whole: as one string and
    its encoding it took a render to 274 MiB.
    """
    yield URLSET_OPEN.encode()
    for i in range(0, len(fragments), PIECE):
        yield "".join(fragments[i : i + PIECE]).encode()
    yield URLSET_CLOSE.encode()


def gzip_pieces(pieces: Iterable[bytes]) -> bytes:
    """One gzip member of the pieces, in order; the same pieces always give the same bytes (mtime 0)."""
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS)
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    loc: str
    lastmod: str | None


def index_entry_size(entry: IndexEntry) -> int:
    """The bytes one entry adds to an index."""
    return len(index_xml([entry])) - len(index_xml([]))


def index_xml(entries: Sequence[IndexEntry]) -> bytes:
    parts = [INDEX_OPEN]
    for e in entries:
        parts += ["<sitemap><loc>", escape(e.loc), "</loc>"]
        if e.lastmod is not None:
            parts += ["<lastmod>", e.lastmod, "</lastmod>"]
        parts.append("</sitemap>\n")
    parts.append(INDEX_CLOSE)
    return "".join(parts).encode()
