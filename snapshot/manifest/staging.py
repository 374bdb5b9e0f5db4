"""A rebuild's new manifest, loaded beside the live one and swapped in by one transaction.

The staging tables are copies of the tables a rebuild replaces (`REPLACED`), made without their indexes (built
after the load, under names of their own), and the news articles' staging table. What goes in them, which copy
of a repeated key stays and which claim of a URL wins is snapshot/rebuild.py's; here are the reads and writes
it is made of.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Connection, MetaData, func, literal, select, text
from sqlalchemy.exc import IntegrityError

from sitemap_keeper.snapshot.manifest import dead_letters as dead_letter_rows
from sitemap_keeper.snapshot.manifest import meta_values, news_rows, url_claims
from sitemap_keeper.snapshot.manifest.bulk import DocumentRun
from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY, SQLITE_CACHE_KIB
from sitemap_keeper.snapshot.manifest.schema import (
    STAGING_SUFFIX,
    documents,
    loc_owners,
    loc_waiting,
    news_articles_staging,
    sections,
    shard_packs,
    shards,
)

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.manifest import Manifest

REPLACED = (documents, shards, sections, shard_packs, loc_owners)  # the tables a rebuild replaces
SQLITE_SORT_KIB = 16_384  # page cache while the indexes are built: a bigger one only costs memory

PackRow = tuple[int, int, int, bytes]  # (seq, entry_from, entry_to, data) of one shard's pack
ShardTotals = dict[tuple[str, int], tuple[int, int]]  # (section, shard_no) -> (URLs, bytes)


class Staging:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        md = MetaData()
        self.tables = {t.name: t.to_metadata(md, name=t.name + STAGING_SUFFIX) for t in REPLACED}
        self.news = news_articles_staging(md)
        for t in self.tables.values():
            for ix in list(t.indexes):
                t.indexes.discard(ix)  # built after the load, under names of their own
        self.documents = self.tables[documents.name]
        self.packs = self.tables[shard_packs.name]
        self.claims = self.tables[loc_owners.name]

    def create(self) -> None:
        """Empty staging tables (a failed rebuild's are dropped first)."""
        self.drop()
        with self.manifest.write() as conn:
            for t in (*self.tables.values(), self.news):
                t.create(conn)

    def drop(self) -> None:
        with self.manifest.write() as conn:
            for t in (*self.tables.values(), self.news):
                conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))

    def load(
        self,
        documents_runs: Iterable[DocumentRun],
        packs: Sequence[Sequence[Any]],
        claims: Iterable[url_claims.ClaimRun],
        letters: Sequence[tuple[str, str, bytes]],
        news: Sequence[Sequence[Any]],
    ) -> None:
        """Insert a packed documents row per document, the packs (shard_packs rows), the URL claims, the dead
        letters and the news articles (news_articles_staging rows), in one transaction."""
        manifest = self.manifest
        with manifest.write() as conn:
            manifest.bulk.load_documents(conn, self.documents.name, documents_runs)
            manifest.bulk.insert(conn, self.packs.name, [c.name for c in shard_packs.c], packs)
            url_claims.load_runs(manifest, conn, self.claims.name, claims)
            dead_letter_rows.add(conn, letters)
            manifest.bulk.insert(conn, self.news.name, [c.name for c in self.news.c], news)

    # -- in the swap's transaction ----------------------------------------------------------------------------

    def begin_index_builds(self, conn: Connection, threads: int) -> None:
        """On SQLite, the index builds' sorts take up to SQLITE_SORT_KIB, in up to `threads` sorter threads."""
        if self.manifest.dialect == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_SORT_KIB}")
            conn.exec_driver_sql(f"PRAGMA threads = {max(0, threads)}")

    def end_index_builds(self, conn: Connection) -> None:
        if self.manifest.dialect == "sqlite":
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            conn.exec_driver_sql("PRAGMA threads = 0")

    def index_shards(self, conn: Connection, suffix: str) -> None:
        conn.execute(
            text(f"CREATE INDEX ix_documents_shard_{suffix} ON {self.documents.name} (section, shard_no, key)")
        )

    def index_keys(self, conn: Connection, suffix: str) -> bool:
        """Build the documents' unique key index; False (and nothing changed) when a key repeats."""
        return self._unique_index(
            conn, f"CREATE UNIQUE INDEX ux_documents_key_{suffix} ON {self.documents.name} (section, key)"
        )

    def index_claims(self, conn: Connection, suffix: str) -> bool:
        """Build the claims' unique URL index; False (and nothing changed) when a URL is claimed twice."""
        return self._unique_index(conn, f"CREATE UNIQUE INDEX ux_loc_owners_{suffix} ON {self.claims.name} (loc_hash)")

    @staticmethod
    def _unique_index(conn: Connection, sql: str) -> bool:
        try:
            with conn.begin_nested():  # a savepoint: on PostgreSQL a failed statement spoils the transaction
                conn.execute(text(sql))
        except IntegrityError:
            return False
        return True

    def repeated_keys(self, conn: Connection) -> list[tuple[str, str]]:
        docs = self.documents
        return [
            (s, k)
            for s, k in conn.execute(
                select(docs.c.section, docs.c.key).group_by(docs.c.section, docs.c.key).having(func.count() > 1)
            )
        ]

    def shards_of(self, conn: Connection, section: str, key: str) -> list[int]:
        """The shards the copies of a document are in, in order."""
        docs = self.documents
        return sorted(
            {
                int(n)
                for (n,) in conn.execute(select(docs.c.shard_no).where(docs.c.section == section, docs.c.key == key))
            }
        )

    def delete_document(self, conn: Connection, section: str, key: str) -> None:
        """Delete every documents row of a key (not its packs' entries)."""
        docs = self.documents
        conn.execute(docs.delete().where(docs.c.section == section, docs.c.key == key))

    def insert_document(
        self, conn: Connection, section: str, key: str, shard_no: int, version: int | None, size: int, loc_hash: int
    ) -> None:
        conn.execute(
            self.documents.insert().values(
                section=section, key=key, shard_no=shard_no, version=version, size=size, loc_hash=loc_hash
            )
        )

    def shard_packs(self, conn: Connection, section: str, shard_no: int) -> list[PackRow]:
        """(seq, entry_from, entry_to, data) of a shard's packs, in order."""
        t = self.packs
        return [
            (int(seq), int(a), int(b), bytes(data))
            for seq, a, b, data in conn.execute(
                select(t.c.seq, t.c.entry_from, t.c.entry_to, t.c.data)
                .where(t.c.section == section, t.c.shard_no == shard_no)
                .order_by(t.c.seq)
            )
        ]

    def set_pack(self, conn: Connection, section: str, shard_no: int, seq: int, data: bytes) -> None:
        t = self.packs
        conn.execute(
            t.update().where(t.c.section == section, t.c.shard_no == shard_no, t.c.seq == seq).values(data=data)
        )

    def repeated_claims(self, conn: Connection) -> list[tuple[int, str, str, int]]:
        """(URL hash, section, key, ord) of every claim of a URL claimed more than once, by URL, then in source
        order."""
        t = self.claims
        repeated = select(t.c.loc_hash).group_by(t.c.loc_hash).having(func.count() > 1)
        return [
            (int(h), s, k, int(o))
            for h, s, k, o in conn.execute(
                select(t.c.loc_hash, t.c.section, t.c.key, t.c.ord)
                .where(t.c.loc_hash.in_(repeated))
                .order_by(t.c.loc_hash, t.c.ord)
            )
        ]

    def keep_claims(self, conn: Connection, holders: dict[int, tuple[str, str, int]]) -> None:
        """Leave each of these URLs one claim: its holder's (section, key, ord)."""
        t, hashes = self.claims, list(holders)
        for i in range(0, len(hashes), KEYS_PER_QUERY):
            conn.execute(t.delete().where(t.c.loc_hash.in_(hashes[i : i + KEYS_PER_QUERY])))
        if holders:
            conn.execute(
                t.insert(), [{"loc_hash": h, "section": s, "key": k, "ord": o} for h, (s, k, o) in holders.items()]
            )

    def swap_in(self, conn: Connection, totals: ShardTotals | None) -> None:
        """Make the staged manifest the manifest: every shard at a new revision, its counts `totals` (None:
        counted again from the documents rows), the news window the staged one; no claim waits any more (the
        rebuild decided every URL)."""
        revision = meta_values.next_revision(conn)
        meta_values.mark_rebuilt(conn, revision)
        news_rows.swap_in(conn, self.news, revision)
        conn.execute(text(f"DROP TABLE {self.news.name}"))
        staged_shards, docs = self.tables[shards.name], self.documents
        if totals is None:  # a scan of every row: only when documents were removed
            conn.execute(
                staged_shards.insert().from_select(
                    ["section", "shard_no", "url_count", "byte_count", "revision"],
                    select(
                        docs.c.section,
                        docs.c.shard_no,
                        func.count(),
                        func.sum(docs.c.size),
                        literal(revision, BigInteger),
                    ).group_by(docs.c.section, docs.c.shard_no),
                )
            )
        else:
            self.manifest.bulk.insert(
                conn,
                staged_shards.name,
                [c.name for c in shards.c],
                [(s, n, urls, size, revision) for (s, n), (urls, size) in sorted(totals.items()) if urls],
            )
        conn.execute(
            self.tables[sections.name]
            .insert()
            .from_select(
                ["name", "open_shard"],
                select(staged_shards.c.section, func.max(staged_shards.c.shard_no)).group_by(staged_shards.c.section),
            )
        )
        for t in REPLACED:
            conn.execute(text(f"DROP TABLE {t.name}"))
            conn.execute(text(f"ALTER TABLE {t.name}{STAGING_SUFFIX} RENAME TO {t.name}"))
            if self.manifest.dialect == "postgresql" and t not in (documents, loc_owners):  # no primary key
                conn.execute(text(f"ALTER INDEX {t.name}{STAGING_SUFFIX}_pkey RENAME TO {t.name}_pkey"))
        conn.execute(loc_waiting.delete())
