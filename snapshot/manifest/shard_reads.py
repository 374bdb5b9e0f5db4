"""Reading shards: their counts, and their documents' content from the documents rows or, for what a rebuild
loaded and no event changed since, from the shard's packs (snapshot/packs.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from sitemap_keeper.snapshot import packs
from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.errors import ManifestDamaged
from sitemap_keeper.snapshot.manifest.records import Shard
from sitemap_keeper.snapshot.manifest.schema import PACKED_REVISION, meta, shard_packs, shards


class PackColumns(NamedTuple):
    """The columns of a shard's entries in its packs (snapshot/packs.py), one entry per document."""

    keys: list[str]
    versions: list[int | None]
    locs: list[str]
    lastmods: list[str | None]
    stamps: list[float | None]  # lastmod_ts
    sizes: list[int]
    xmls: list[str]


NO_PACKS = PackColumns([], [], [], [], [], [], [])


class ShardReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    def shards(self, conn: Connection | None = None) -> list[Shard]:
        query = select(shards).order_by(shards.c.section, shards.c.shard_no)
        with self.db.connection(conn) as c:
            return [Shard(*row) for row in c.execute(query)]

    @staticmethod
    def revision(conn: Connection, section: str, shard_no: int) -> int | None:
        """The shard's revision; None when there is no such shard."""
        return conn.execute(
            select(shards.c.revision).where(shards.c.section == section, shards.c.shard_no == shard_no)
        ).scalar()

    def shard_rows(
        self, conn: Connection, section: str, shard_no: int
    ) -> tuple[list[str], list[str | None], list[float | None]]:
        """xml, lastmod and lastmod_ts of the live documents of one shard, in a stable order (by key), as columns."""
        with self.db.cursor(conn) as (cur, mark):  # fetched by the driver in C: a shard is 50,000 rows
            as_rebuilt = self.as_rebuilt(cur, mark, section, shard_no)
            if as_rebuilt is not None:
                return as_rebuilt
            cur.execute(
                "SELECT key, xml, lastmod, lastmod_ts FROM documents "
                f"WHERE section = {mark} AND shard_no = {mark} AND size > 0 ORDER BY key",
                (section, shard_no),
            )
            rows = cur.fetchall()
            if not rows:
                return [], [], []
            keys, xmls, lastmods, stamps = (list(col) for col in zip(*rows, strict=True))
            packed = [i for i, xml in enumerate(xmls) if xml is None]
            if packed:  # their content is in the shard's packs
                at, cols = self.packed(cur, mark, section, shard_no)
                pxmls, plastmods, pstamps = cols.xmls, cols.lastmods, cols.stamps
                for i in packed:
                    p = at[keys[i]]
                    xmls[i], lastmods[i], stamps[i] = pxmls[p], plastmods[p], pstamps[p]
            return xmls, lastmods, stamps  # every xml filled in above

    def as_rebuilt(
        self, cur: Any, mark: str, section: str, shard_no: int
    ) -> tuple[list[str], list[str | None], list[float | None]] | None:
        """A shard no event touched since the last rebuild, from its packs alone, in the same order; None for any
        other shard, or one whose packs do not hold exactly its URL count (the documents rows decide then)."""
        cur.execute(
            f"SELECT s.url_count FROM shards s JOIN {meta.name} m ON m.name = {mark} "
            f"AND m.value = s.revision WHERE s.section = {mark} AND s.shard_no = {mark}",
            (PACKED_REVISION, section, shard_no),
        )
        found = cur.fetchone()
        if found is None:
            return None
        xmls, lastmods, stamps = _from_packs(cur, mark, section, shard_no)
        return (xmls, lastmods, stamps) if len(xmls) == found[0] else None

    @staticmethod
    def packed(cur: Any, mark: str, section: str, shard_no: int) -> tuple[Positions, PackColumns]:
        """The columns of one shard's packs, and where each key is in them (a later copy wins); every packed
        row of the shard must be there."""
        cols = pack_columns(cur, mark, section, shard_no)
        return Positions(section, shard_no, zip(cols.keys, range(len(cols.keys)), strict=True)), cols

    def live_loc(self, conn: Connection, section: str, key: str) -> str | None:
        """The URL a document is at (its row, or its shard's packs); None if it is not live."""
        with self.db.cursor(conn) as (cur, mark):
            cur.execute(
                f"SELECT shard_no, loc, xml IS NULL FROM documents WHERE section = {mark} AND key = {mark} "
                "AND size > 0",
                (section, key),
            )
            row = cur.fetchone()
            if row is None:
                return None
            shard_no, loc, packed = row
            if not packed:
                return str(loc)
            at, cols = self.packed(cur, mark, section, shard_no)
            return str(cols.locs[at[key]])

    def url_count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(shards.c.url_count), 0))).scalar_one())

    def section_counts(self) -> dict[str, tuple[int, int]]:
        """section -> (shards with URLs, URLs)."""
        query = (
            select(shards.c.section, func.count(), func.sum(shards.c.url_count))
            .where(shards.c.url_count > 0)
            .group_by(shards.c.section)
            .order_by(shards.c.section)
        )
        with self.db.engine.connect() as conn:
            return {s: (int(n), int(u)) for s, n, u in conn.execute(query)}

    def documents(self) -> Iterator[tuple[str, str, str, str | None]]:
        """(section, key, loc, lastmod) of every live document, a shard at a time."""
        with self.db.read() as conn, self.db.cursor(conn) as (cur, mark):
            for shard in self.shards(conn):
                cur.execute(
                    "SELECT key, loc, lastmod, xml IS NULL FROM documents "
                    f"WHERE section = {mark} AND shard_no = {mark} AND size > 0",
                    (shard.section, shard.shard_no),
                )
                rows = cur.fetchall()
                at, cols = (
                    self.packed(cur, mark, shard.section, shard.shard_no)
                    if any(r[3] for r in rows)
                    else (Positions(shard.section, shard.shard_no, ()), NO_PACKS)
                )
                for key, loc, lastmod, is_packed in rows:
                    if is_packed:
                        p = at[key]
                        loc, lastmod = cols.locs[p], cols.lastmods[p]
                    yield shard.section, key, loc, lastmod


def _from_packs(
    cur: Any, mark: str, section: str, shard_no: int
) -> tuple[list[str], list[str | None], list[float | None]]:
    keys, _versions, _locs, lastmods, stamps, _sizes, xmls = pack_columns(cur, mark, section, shard_no)
    # Blank keys are copies of a repeated key that the rebuild dropped (`packs.without`).
    order = sorted((i for i, key in enumerate(keys) if key), key=keys.__getitem__)
    return [xmls[i] for i in order], [lastmods[i] for i in order], [stamps[i] for i in order]


def pack_columns(cur: Any, mark: str, section: str, shard_no: int) -> PackColumns:
    """The columns of one shard's entries in its packs, in source order."""
    cur.execute(
        f"SELECT entry_from, entry_to, data FROM {shard_packs.name} "
        f"WHERE section = {mark} AND shard_no = {mark} ORDER BY seq",
        (section, shard_no),
    )
    return PackColumns(*packs.shard_columns([(a, b, bytes(data)) for a, b, data in cur.fetchall()]))


class Positions(dict[str, int]):
    """Where each key of a shard's packs is in their columns; a key missing from them means the manifest is
    damaged, and says where."""

    def __init__(self, section: str, shard_no: int, found: Iterable[tuple[str, int]]) -> None:
        super().__init__(found)
        self.where = f"shard {shard_no} of section {section}"

    def __missing__(self, key: str) -> int:
        raise ManifestDamaged(f"document {key!r} of {self.where} is packed, but no pack of the shard holds it")
