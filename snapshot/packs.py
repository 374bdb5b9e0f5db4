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

Columns = list[list[Any]]
"""A pack's columns: keys, versions, locs, lastmods, lastmod_ts, sizes, xmls (one entry per document)."""


def pack(columns: Sequence[Sequence[Any]]) -> bytes:
    """One compressed value of a pack's columns."""
    return igzip.compress(orjson.dumps(columns), compresslevel=PACK_LEVEL, mtime=0)


def unpack(data: bytes) -> Columns:
    columns: Columns = orjson.loads(igzip.decompress(data))  # type: ignore[no-untyped-call]
    return columns


def shard_columns(packs: Sequence[tuple[int, int, bytes]]) -> Columns:
    """The columns of one shard's entries, from its packs in source order ((entry_from, entry_to, data) each):
    columns, not a tuple per entry, since a shard holds 50,000 of them."""
    out: Columns = [[] for _ in range(7)]
    for a, b, data in packs:
        for col, values in zip(out, unpack(data), strict=True):
            col += values[a:b]
    return out


def without(data: bytes, key: str, keep: int | None) -> bytes:
    """The pack with every copy of `key` but its `keep`-th entry blanked out (None: every copy). Blanking keeps
    the positions, which entry ranges point at; no document has an empty key, so a blank one matches no row."""
    cols = unpack(data)
    cols[0] = [k if k != key or i == keep else "" for i, k in enumerate(cols[0])]
    return pack(cols)
