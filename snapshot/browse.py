"""One page of a published sitemap file, for a person to read: its entries from `first` to `first + size`.

The file is decompressed as it streams, once per request; only the entries of the page are kept, the others
are counted. A shard this service wrote (one `<url>` a line) is counted by its lines and only the page's lines
are parsed; any other file is parsed whole by expat.

Every child of `<url>` this module has no column for (Google News, video, any extension) becomes a `Field`: its
path of prefixed names, as the file declares the prefixes, and its text.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

from sitemap_keeper.snapshot.render import URLSET_CLOSE, URLSET_OPEN

SM = "http://www.sitemaps.org/schemas/sitemap/0.9"
IMAGE = "http://www.google.com/schemas/sitemap-image/1.1"
XHTML = "http://www.w3.org/1999/xhtml"
ENTRY_ELEMENTS = {f"{SM} url": "urlset", f"{SM} sitemap": "sitemapindex"}
ROOTS = {f"{SM} urlset": "urlset", f"{SM} sitemapindex": "sitemapindex"}
SIMPLE = {f"{SM} {n}": n for n in ("loc", "lastmod", "changefreq", "priority")}
_IMAGE, _LINK = f"{IMAGE} image", f"{XHTML} link"
_IMAGE_FIELDS = {f"{IMAGE} {n}": n for n in ("loc", "title", "caption")}
_READ_BYTES = 1 << 18  # bytes per block a file is read in


class NotASitemap(ValueError):
    """The file is not a sitemap or sitemap index this page can show; the message says why."""


@dataclass(frozen=True, slots=True)
class Field:
    """An element of an entry with no column of its own: `news:news/news:title`, its text and attributes."""

    path: str
    value: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Image:
    loc: str = ""
    title: str | None = None
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class Alternate:
    hreflang: str
    href: str


@dataclass(slots=True)
class Entry:
    """One `<url>` of a sitemap or one `<sitemap>` of an index."""

    number: int  # 1-based position in the file
    simple: dict[str, str] = field(default_factory=dict)  # loc, lastmod, changefreq, priority
    images: list[Image] = field(default_factory=list)
    alternates: list[Alternate] = field(default_factory=list)
    fields: list[Field] = field(default_factory=list)


@dataclass(slots=True)
class FilePage:
    kind: str  # "urlset" or "sitemapindex"
    total: int  # entries in the whole file
    entries: list[Entry]


def inflated(data: bytes) -> Iterator[bytes]:
    """The file's bytes in blocks, gunzipped if they are gzip; never the whole content at once."""
    stream = gzip.GzipFile(fileobj=io.BytesIO(data)) if data.startswith(b"\x1f\x8b") else io.BytesIO(data)
    try:
        while block := stream.read(_READ_BYTES):
            yield block
    except EOFError:
        raise NotASitemap("not a readable gzip file: it ends before its last block") from None


class _Reader:
    """expat's callbacks: the stack of open elements, the entry being read (on the page only), the count."""

    def __init__(self, first: int, size: int) -> None:
        self.first, self.last = first, first + size
        self.prefixes: dict[str, str] = {SM: ""}
        self.stack: list[str] = []
        self.kind: str | None = None
        self.total = 0
        self.entries: list[Entry] = []
        self.entry: Entry | None = None
        self.text: list[str] = []
        self.attrs: list[dict[str, str]] = []

    def namespace(self, prefix: str | None, uri: str) -> None:
        self.prefixes.setdefault(uri, prefix or "")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        depth = len(self.stack)
        self.stack.append(name)
        if depth == 0:
            self.kind = ROOTS.get(name)
            if self.kind is None:
                raise NotASitemap(f"the root element is {self.short(name)}, not urlset or sitemapindex")
        elif depth == 1 and ENTRY_ELEMENTS.get(name) == self.kind:
            self.total += 1
            if self.first < self.total <= self.last:
                self.entry = Entry(self.total)
        elif self.entry is not None:
            self.text.clear()
            self.attrs.append(attrs)
            if name == _IMAGE and depth == 2:
                self.entry.images.append(Image())
            elif name == _LINK and depth == 2:
                self.entry.alternates.append(Alternate(attrs.get("hreflang", ""), attrs.get("href", "")))

    def end(self, name: str) -> None:
        depth = len(self.stack) - 1
        self.stack.pop()
        entry = self.entry
        if entry is None or depth == 0:
            return
        if depth == 1:
            self.entries.append(entry)
            self.entry = None
            return
        attrs = self.attrs.pop()
        text = "".join(self.text).strip()
        self.text.clear()
        if depth == 2 and name in SIMPLE:
            entry.simple[SIMPLE[name]] = text
        elif depth == 3 and self.stack[2] == _IMAGE and name in _IMAGE_FIELDS:
            setattr(entry.images[-1], _IMAGE_FIELDS[name], text)
        elif not (depth == 2 and name in (_IMAGE, _LINK)) and (text or attrs):
            path = "/".join(self.short(n) for n in [*self.stack[2:], name])
            entry.fields.append(Field(path, text, tuple((self.short(k), v) for k, v in attrs.items())))

    def data(self, text: str) -> None:
        if self.entry is not None:
            self.text.append(text)

    def short(self, name: str) -> str:
        """`{uri} local` as the file names it: `prefix:local`, or the URI in braces for one it never declared."""
        uri, _, local = name.rpartition(" ")
        if not uri:
            return local
        prefix = self.prefixes.get(uri)
        if prefix is None:
            return f"{{{uri}}}{local}"
        return f"{prefix}:{local}" if prefix else local


def read_page(data: bytes, first: int, size: int) -> FilePage:
    """Entries first+1 .. first+size of a sitemap file (gzip or not) and how many it has in all.

    NotASitemap when it is neither a urlset nor a sitemapindex or is not well-formed XML.
    """
    own = _own_page(data, first, size)
    if own is not None:
        return own
    return _parsed_page(inflated(data), first, size)


def _parsed_page(blocks: Iterable[bytes], first: int, size: int) -> FilePage:
    reader = _Reader(first, size)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartNamespaceDeclHandler = reader.namespace
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    try:
        for block in blocks:
            parser.Parse(block, False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise NotASitemap(f"not well-formed XML: {exc}") from None
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise NotASitemap(f"not a readable gzip file: {exc}") from None
    if reader.kind is None:
        raise NotASitemap("the file is empty")
    return FilePage(reader.kind, reader.total, reader.entries)


_OWN_OPEN, _OWN_CLOSE = URLSET_OPEN.encode(), URLSET_CLOSE.encode()


def _own_page(data: bytes, first: int, size: int) -> FilePage | None:
    """read_page for a shard snapshot.render wrote (its header, then one <url> a line, then its footer): the
    lines are counted in C and only the page's lines are parsed. None for any other file, or any line that
    is not one whole <url> (render escapes every `<` in text, so a line holds `<url>` once or not at all)."""
    count, rest, text, started = 0, b"", b"", False
    page: list[bytes] = []
    for block in inflated(data):
        text = rest + block
        if not started:
            if len(text) < len(_OWN_OPEN):
                rest = text
                continue
            if not text.startswith(_OWN_OPEN):
                return None
            text, started = text[len(_OWN_OPEN) :], True
        cut = text.rfind(b"\n") + 1
        whole, rest = text[:cut], text[cut:]
        lines = whole.count(b"\n")
        if not rest and whole.endswith(_OWN_CLOSE):
            whole, lines = whole[: -len(_OWN_CLOSE)], lines - 1
        if whole.count(b"<url>") != lines or _OWN_CLOSE in whole:
            return None
        if count < first + size and count + lines > first:
            page += whole.split(b"\n")[max(0, first - count) : min(lines, first + size - count)]
        count += lines
    if not started or rest or not text.endswith(_OWN_CLOSE):
        return None
    found = _parsed_page([_OWN_OPEN, *(line + b"\n" for line in page), _OWN_CLOSE], 0, size)
    for entry in found.entries:
        entry.number += first
    return FilePage("urlset", count, found.entries)
