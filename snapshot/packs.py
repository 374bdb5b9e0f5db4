"""Shard packs: what a full rebuild loaded, stored a few thousand documents to a row.

A rebuild writes millions of documents; a full database row each (fragment, URL, lastmod) made the main
process's inserts the bound of the whole rebuild. So a rebuild stores, per document, only the small row the
apply path needs (key, shard, version, size) and keeps the content in packs: the compressed columns of the
documents of one section in one chunk of the source, made by the worker that parsed the chunk. A documents row
whose `xml` is NULL and whose `size` is not 0 is *packed*: its content is in a pack of its shard. The first
event that changes it writes a full row, which wins from then on; the pack keeps its stale copy until the next
rebuild replaces every pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from isal import igzip

PACK_LEVEL = 1  # isal level 1: fast enough for the workers, several times smaller than the plain columns

Entry = tuple[str, str | None, float | None, str | None, int | None, int]
"""A packed document: (xml, lastmod, lastmod_ts, loc, version, size)."""
Columns = list[list[Any]]
"""A pack's columns: keys, versions, locs, lastmods, lastmod_ts, sizes, xmls (one entry per document)."""


def pack(columns: Sequence[Sequence[Any]]) -> bytes:
    """One compressed value of a pack's columns."""
    return igzip.compress(orjson.dumps(columns), compresslevel=PACK_LEVEL, mtime=0)


def unpack(data: bytes) -> Columns:
    columns: Columns = orjson.loads(igzip.decompress(data))  # type: ignore[no-untyped-call]
    return columns


def entries(packs: Sequence[tuple[int, int, bytes]]) -> dict[str, Entry]:
    """key -> entry of one shard, from its packs in source order: (entry_from, entry_to, data) each."""
    found: dict[str, Entry] = {}
    for a, b, data in packs:
        keys, versions, locs, lastmods, stamps, sizes, xmls = (col[a:b] for col in unpack(data))
        found.update(zip(keys, zip(xmls, lastmods, stamps, locs, versions, sizes, strict=True), strict=True))
    return found


def without(data: bytes, key: str, keep: int | None) -> bytes:
    """The pack with every copy of `key` but its `keep`-th entry blanked out (None: every copy). Blanking keeps
    the positions, which entry ranges point at; no document has an empty key, so a blank one matches no row."""
    cols = unpack(data)
    cols[0] = [k if k != key or i == keep else "" for i, k in enumerate(cols[0])]
    return pack(cols)
