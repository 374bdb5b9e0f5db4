"""Verification: a generation is checked completely before the router may point at it."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from xml.parsers import expat

from snapshot.limits import Limits
from snapshot.manifest import FileRecord
from snapshot.stores.base import Store


class VerificationError(RuntimeError):
    """A generation is not complete or not valid; it must not be switched to."""


def _parse(name: str, xml: bytes) -> None:
    parser = expat.ParserCreate()
    try:
        parser.Parse(xml, True)  # no handlers: a well-formedness check at C speed
    except expat.ExpatError as exc:
        raise VerificationError(f"{name} is not well-formed XML: {exc}") from None


def check_shard(name: str, xml: bytes, url_count: int, limits: Limits) -> None:
    """A rendered shard is well-formed, within both limits, and holds exactly the manifest's URLs."""
    if len(xml) > limits.max_bytes:
        raise VerificationError(f"{name} is {len(xml)} bytes uncompressed, over the limit of {limits.max_bytes}")
    found = xml.count(b"<url>")
    if found != url_count:
        raise VerificationError(f"{name} holds {found} URLs, the manifest has {url_count}")
    if found > limits.max_urls:
        raise VerificationError(f"{name} holds {found} URLs, over the limit of {limits.max_urls}")
    _parse(name, xml)


def check_index(name: str, xml: bytes, limits: Limits) -> None:
    entries = xml.count(b"<sitemap>")
    if not 1 <= entries <= limits.max_index_entries:
        raise VerificationError(f"{name} lists {entries} sitemaps, allowed 1 to {limits.max_index_entries}")
    if len(xml) > limits.max_bytes:
        raise VerificationError(f"{name} is {len(xml)} bytes, over the limit of {limits.max_bytes}")
    _parse(name, xml)


def verify_generation(store: Store, gen_id: str, records: Mapping[str, FileRecord], limits: Limits,
                      deep: bool = False) -> None:
    """The store holds exactly the recorded files, with the recorded sizes and (where it can tell) checksums.

    `deep` also reads every shard back, decompresses and parses it, and checks its URL count.
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
            if rec.shard_no is not None:
                try:
                    xml = zlib.decompress(data, wbits=31)
                except zlib.error as exc:
                    raise VerificationError(f"{gen_id}/{name} is not valid gzip: {exc}") from None
                check_shard(name, xml, rec.url_count, limits)
            elif name.endswith(".xml"):  # other files (IndexNow's key) are checked by size and checksum only
                check_index(name, data, limits)
