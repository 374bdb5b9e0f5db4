"""Verification: a generation is checked completely before the router may point at it."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.parsers import expat
from xml.parsers.expat import XMLParserType

from lxml import etree

from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest.records import FileRecord
from sitemap_keeper.snapshot.news import parse_news_name
from sitemap_keeper.snapshot.stores.base import Store


class VerificationError(RuntimeError):
    """A generation is not complete or not valid; it must not be switched to."""


def _parse(name: str, parser: XMLParserType, data: bytes, final: bool = True) -> None:
    try:
        parser.Parse(data, final)  # no handlers: a well-formedness check at C speed
    except expat.ExpatError as exc:
        raise VerificationError(f"{name} is not well-formed XML: {exc}") from None


class ShardCheck:
    """A shard file checked as it is written, piece by piece: well-formed, within both limits, and holding
    exactly the manifest's URLs. Pieces split the file between elements, never inside a `<url>` tag."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.size = 0
        self.urls = 0
        self._parser = expat.ParserCreate()

    def feed(self, piece: bytes) -> None:
        self.size += len(piece)
        self.urls += piece.count(b"<url>")
        _parse(self.name, self._parser, piece, final=False)

    def passing(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """The pieces, each fed to the check on its way through."""
        for piece in pieces:
            self.feed(piece)
            yield piece

    def close(self, url_count: int) -> None:
        """Raise VerificationError unless the whole file passed, holding `url_count` URLs."""
        _parse(self.name, self._parser, b"")
        name, limits = self.name, self.limits
        if self.size > limits.max_bytes:
            raise VerificationError(f"{name} is {self.size} bytes uncompressed, over the limit of {limits.max_bytes}")
        if self.urls != url_count:
            raise VerificationError(f"{name} holds {self.urls} URLs, the manifest has {url_count}")
        if self.urls > limits.max_urls:
            raise VerificationError(f"{name} holds {self.urls} URLs, over the limit of {limits.max_urls}")


def check_shard(name: str, xml: bytes, url_count: int, limits: Limits) -> None:
    """A whole shard file (read back from a store) passes `ShardCheck`."""
    check = ShardCheck(name, limits)
    check.feed(xml)
    check.close(url_count)


def check_index(name: str, xml: bytes, limits: Limits) -> None:
    entries = xml.count(b"<sitemap>")
    if not 1 <= entries <= limits.max_index_entries:
        raise VerificationError(f"{name} lists {entries} sitemaps, allowed 1 to {limits.max_index_entries}")
    if len(xml) > limits.max_bytes:
        raise VerificationError(f"{name} is {len(xml)} bytes, over the limit of {limits.max_bytes}")
    _parse(name, expat.ParserCreate(), xml)
    schema, parser = _index_schema()
    if not schema.validate(etree.fromstring(xml, parser)):
        raise VerificationError(
            f"{name} is not valid against the sitemaps.org index schema: {schema.error_log.last_error}"
        )


@functools.cache
def _index_schema() -> tuple[Any, Any]:
    """siteindex.xsd (as the sitemaps.org site gives it) and a parser that reads nothing but the file."""
    schema = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("siteindex.xsd"))))
    return schema, etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)


def verify_generation(
    store: Store,
    gen_id: str,
    records: Mapping[str, FileRecord],
    limits: Limits,
    deep: bool = False,
    on_file: Callable[[int], None] | None = None,
) -> None:
    """The store holds exactly the recorded files, with the recorded sizes and (where it can tell) checksums.

    `deep` also reads every shard back, decompresses and parses it, and checks its URL count; `on_file` is
    told the bytes of each file read back.
    """
    listing = store.list(gen_id)
    missing = sorted(set(records) - set(listing))
    if missing:
        raise VerificationError(f"generation {gen_id} lacks {len(missing)} files, first {missing[:5]}")
    extra = sorted(set(listing) - set(records))
    if extra:
        raise VerificationError(f"generation {gen_id} has {len(extra)} unexpected files, first {extra[:5]}")
    for name, rec in records.items():
        info = listing[name]
        if info.size != rec.size:
            raise VerificationError(f"{gen_id}/{name} is {info.size} bytes, {rec.size} were written")
        if info.md5 is not None and info.md5 != rec.md5:
            raise VerificationError(f"{gen_id}/{name} has checksum {info.md5}, {rec.md5} was written")
    if deep:
        for name, rec in records.items():
            data = store.get(gen_id, name)
            if on_file is not None:
                on_file(len(data))
            if rec.shard_no is not None or parse_news_name(name) is not None:
                try:
                    xml = zlib.decompress(data, wbits=31)
                except zlib.error as exc:
                    raise VerificationError(f"{gen_id}/{name} is not valid gzip: {exc}") from None
                check_shard(name, xml, rec.url_count, limits)
            elif name.endswith(".xml"):  # other files (IndexNow's key) are checked by size and checksum only
                check_index(name, data, limits)
