"""Full snapshot rebuild: replace the manifest from a source, streaming, then publish a fresh generation.

The new manifest is loaded into staging tables and swapped in with one short transaction, so a rebuild that
fails or is killed half-way changes nothing: the old manifest and the live generation stay as they were.
Parsing and validation run in worker processes (both cores); this process assigns shards and loads rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import orjson
from sqlalchemy import BigInteger, Connection, MetaData, Table, func, literal, select, text
from sqlalchemy.exc import IntegrityError

from snapshot.bounded import bounded_map
from snapshot.document import InvalidDocument, Rules, load_json, parse_document
from snapshot.faults import checkpoint
from snapshot.limits import Limits
from snapshot.manifest import DOCUMENT_COLUMNS, Counts, Manifest, documents, sections, shards
from snapshot.publish import EmptyManifest
from snapshot.render import SHARD_OVERHEAD, rendered

CHUNK_SIZE = 5_000  # rows of a database source per task sent to a worker
BLOCK_SIZE = 1 << 20  # bytes of a JSON-lines source per task (about 5,000 documents)
IN_FLIGHT = 4  # tasks queued ahead per worker: enough to keep both cores busy, little memory

Row = list[Any]  # a documents row in DOCUMENT_COLUMNS order; a list, so the shard number is filled in place
Payload = bytes | dict[str, Any]  # a JSON line, or a row of the application's database


@dataclass(slots=True)
class Chunk:
    """Consecutive items of a source: `name:first`, `name:first+1`, ... name them in dead letters.

    `items` is either raw JSON-lines text (split in the worker, so this process only reads) or a list of
    database rows. Blank lines keep their numbers but are no items.
    """

    name: str
    first: int
    items: bytes | list[dict[str, Any]]

    def payloads(self) -> Iterator[tuple[int, Payload]]:
        if isinstance(self.items, bytes):
            for n, line in enumerate(self.items.split(b"\n"), self.first):
                line = line.strip()
                if line:
                    yield n, line
        else:
            yield from enumerate(self.items, self.first)


@dataclass(slots=True)
class Parsed:
    rows: list[Row]
    rejects: list[tuple[str, str, bytes]]  # (source, reason, raw)


def parse_chunk(rules: Rules, chunk: Chunk) -> Parsed:
    """Validate and render one chunk of source documents (runs in a worker process)."""
    out = Parsed([], [])
    rows = out.rows
    for n, payload in chunk.payloads():
        try:
            obj = load_json(payload) if isinstance(payload, bytes) else payload
            if isinstance(obj, dict) and obj.get("op", "upsert") != "upsert":
                raise InvalidDocument(f"a rebuild source holds documents, not {obj.get('op')!r} events")
            d = parse_document(obj, rules)
        except InvalidDocument as exc:
            raw = payload if isinstance(payload, bytes) else orjson.dumps(payload, default=str)
            out.rejects.append((f"{chunk.name}:{n}", str(exc), raw))
            continue
        xml, size = rendered(d)
        rows.append([d.section, d.key, 0, d.version, d.loc, d.lastmod, d.lastmod_ts, size, xml])
    return out


def row_chunks(name: str, rows: Iterable[dict[str, Any]], size: int = CHUNK_SIZE) -> Iterator[Chunk]:
    """Group database rows into chunks, numbered from 1."""
    chunk: list[dict[str, Any]] = []
    first = 1
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield Chunk(name, first, chunk)
            first += len(chunk)
            chunk = []
    if chunk:
        yield Chunk(name, first, chunk)


class Rebuilder:
    def __init__(self, manifest: Manifest, rules: Rules, limits: Limits, workers: int = 2) -> None:
        self.manifest = manifest
        self.rules = rules
        self.limits = limits
        self.workers = workers
        md = MetaData()
        self.staging = {t.name: t.to_metadata(md, name=t.name + "_staging") for t in (documents, shards, sections)}
        for t in self.staging.values():
            for ix in list(t.indexes):
                t.indexes.discard(ix)  # built after the load, under names of their own

    def rebuild(self, source: Iterable[Chunk], progress: Callable[[int], None] | None = None) -> Counts:
        """Load every document of `source` into a new manifest and swap it in. Returns the counts."""
        self._drop_staging()
        for t in self.staging.values():
            t.create(self.manifest.engine)
        counts = Counts()
        totals: dict[tuple[str, int], tuple[int, int]] = {}  # (section, shard_no) -> (URLs, bytes), when full
        sections_state: dict[str, list[int]] = {}  # section -> [open shard_no, its URLs, its bytes]
        batch: list[Row] = []
        letters: list[tuple[str, str, bytes]] = []
        workers = max(1, self.workers)
        with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
            results = bounded_map(pool, _parse_with_rules(self.rules), source, workers * IN_FLIGHT)
            for parsed in results:
                self._assign(parsed.rows, sections_state, totals)
                batch += parsed.rows
                letters += parsed.rejects
                counts.applied += len(parsed.rows)
                counts.rejected += len(parsed.rejects)
                if len(batch) >= 50_000:
                    self._load(batch, letters)
                    batch, letters = [], []
                if progress is not None:
                    progress(len(parsed.rows) + len(parsed.rejects))
            self._load(batch, letters)
        if counts.applied == 0:  # never swap an empty manifest in: the next publish would drop the whole site
            self._drop_staging()
            raise EmptyManifest(f"no valid document in the source ({counts}): the manifest is left as it was")
        checkpoint("rebuild-swap")
        for section, (shard_no, urls, size) in sections_state.items():
            totals[section, shard_no] = (urls, size)
        counts.stale = self._finish(totals)
        counts.applied -= counts.stale
        return counts

    def _assign(self, rows: list[Row], state: dict[str, list[int]], full: dict[tuple[str, int], tuple[int, int]]
                ) -> None:
        """Fill each section's open shard in source order (the hot loop of this process: kept lean)."""
        max_urls = self.limits.max_urls
        max_bytes = self.limits.max_bytes - SHARD_OVERHEAD
        for row in rows:
            st = state.get(row[0])
            if st is None:
                st = state[row[0]] = [1, 0, 0]  # [shard_no, url_count, byte_count]
            size = row[7]
            if st[1] >= max_urls or st[2] + size > max_bytes:  # Limits.fits, inlined
                full[row[0], st[0]] = (st[1], st[2])
                st[0] += 1
                st[1] = st[2] = 0
            st[1] += 1
            st[2] += size
            row[2] = st[0]

    def _load(self, rows: list[Row], letters: list[tuple[str, str, bytes]]) -> None:
        with self.manifest.write() as conn:
            self.manifest.bulk_insert(conn, self.staging["documents"].name, DOCUMENT_COLUMNS, rows)
            Manifest.add_dead_letters(conn, letters)

    def _finish(self, totals: dict[tuple[str, int], tuple[int, int]]) -> int:
        """Remove duplicate keys, index, count shards, swap the staging tables in. Returns duplicates removed.

        `totals` are the shards' URLs and bytes as loaded: right unless duplicates had to be removed.
        """
        docs = self.staging["documents"]
        suffix = os.urandom(4).hex()
        duplicates = 0
        with self.manifest.write() as conn:
            conn.execute(text(f"CREATE INDEX ix_documents_shard_{suffix} ON {docs.name} (section, shard_no, key)"))
            try:
                with conn.begin_nested():  # a savepoint: on PostgreSQL a failed statement spoils the transaction
                    conn.execute(text(f"CREATE UNIQUE INDEX ux_documents_key_{suffix} ON {docs.name} (section, key)"))
            except IntegrityError:  # the source repeated some keys: keep one copy of each, then index
                dupes = conn.execute(select(docs.c.section, docs.c.key)
                                     .group_by(docs.c.section, docs.c.key).having(func.count() > 1)).all()
                for section, key in dupes:
                    duplicates += self._keep_newest(conn, docs, section, key)
                conn.execute(text(f"CREATE UNIQUE INDEX ux_documents_key_{suffix} ON {docs.name} (section, key)"))
            revision = Manifest.next_revision(conn)
            if duplicates:  # count again what is left (a scan of every row: only then)
                conn.execute(self.staging["shards"].insert().from_select(
                    ["section", "shard_no", "url_count", "byte_count", "revision"],
                    select(docs.c.section, docs.c.shard_no, func.count(), func.sum(docs.c.size),
                           literal(revision, BigInteger))
                    .group_by(docs.c.section, docs.c.shard_no)))
            else:
                self.manifest.bulk_insert(conn, self.staging["shards"].name, [c.name for c in shards.c], [
                    (s, n, urls, size, revision) for (s, n), (urls, size) in sorted(totals.items()) if urls])
            conn.execute(self.staging["sections"].insert().from_select(
                ["name", "open_shard"],
                select(self.staging["shards"].c.section, func.max(self.staging["shards"].c.shard_no))
                .group_by(self.staging["shards"].c.section)))
            for t in (documents, shards, sections):
                conn.execute(text(f"DROP TABLE {t.name}"))
                conn.execute(text(f"ALTER TABLE {t.name}_staging RENAME TO {t.name}"))
                if self.manifest.dialect == "postgresql" and t is not documents:
                    conn.execute(text(f"ALTER INDEX {t.name}_staging_pkey RENAME TO {t.name}_pkey"))
        return duplicates

    @staticmethod
    def _keep_newest(conn: Connection, docs: Table, section: str, key: str) -> int:
        """Keep the copy with the highest version (then the greatest content, to be deterministic)."""
        where = (docs.c.section == section) & (docs.c.key == key)
        rows = conn.execute(select(docs).where(where)).all()
        best = max(rows, key=lambda r: (r.version if r.version is not None else -1, r.loc or "", r.xml or ""))
        conn.execute(docs.delete().where(where))
        conn.execute(docs.insert().values(**best._asdict()))
        return len(rows) - 1

    def _drop_staging(self) -> None:
        with self.manifest.write() as conn:
            for t in self.staging.values():
                conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))


class _parse_with_rules:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def __call__(self, chunk: Chunk) -> Parsed:
        return parse_chunk(self.rules, chunk)
