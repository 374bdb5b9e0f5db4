"""Full snapshot rebuild: replace the manifest from a source, streaming, then publish a fresh generation.

The new manifest is loaded into staging tables and swapped in with one short transaction, so a rebuild that
fails or is killed half-way changes nothing: the old manifest and the live generation stay as they were.
Parsing and validation run in worker processes (both cores); this process assigns shards and loads rows: a
small documents row each, and the content in shard packs (snapshot/packs.py says why).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection

from sitemap_keeper.snapshot import owners
from sitemap_keeper.snapshot.bounded import bounded_map
from sitemap_keeper.snapshot.crashpoints import checkpoint
from sitemap_keeper.snapshot.document import MAX_DOCUMENT_BYTES, InvalidDocument, Rules, load_json
from sitemap_keeper.snapshot.limits import MAX_SHRINK, Limits, check_max_shrink, shrinks_too_far
from sitemap_keeper.snapshot.manifest import Manifest, url_claims
from sitemap_keeper.snapshot.manifest.bulk import DocumentRun
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.manifest.staging import PackRow, ShardTotals, Staging
from sitemap_keeper.snapshot.news import Article, Placer, StagedArticle, parse_news
from sitemap_keeper.snapshot.packs import pack, unpack, without
from sitemap_keeper.snapshot.refusals import EmptyManifest
from sitemap_keeper.snapshot.render import SHARD_OVERHEAD, document_row, fast_rows
from sitemap_keeper.snapshot.workers import worker_pool

CHUNK_SIZE = 5_000  # rows of a database source per task sent to a worker
BLOCK_SIZE = 1 << 20  # bytes of a JSON-lines source per task (about 5,000 documents)
IN_FLIGHT = 8  # tasks queued ahead per worker: enough to keep both cores busy, little memory
LOAD_ROWS = 50_000  # documents per load transaction
LOADS_AHEAD = 2  # load transactions queued behind the one running
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

    def split(self) -> list[Any]:
        """The items (lines, or database rows), blank lines included: item i is number `first + i`."""
        return self.items.split(b"\n") if isinstance(self.items, bytes) else self.items

    def payloads(self) -> Iterator[tuple[int, Payload]]:
        for n, item in enumerate(self.split(), self.first):
            if (found := payload(item)) is not None:
                yield n, found


def payload(item: Payload) -> Payload | None:
    """An item as it is parsed: a line without its surrounding white space; None for a blank line."""
    if isinstance(item, bytes):
        return item.strip() or None
    return item


@dataclass(slots=True)
class Run:
    """The valid documents of one section in a chunk, in source order: what this process needs to give them
    their shards (keys, versions, sizes), and their content, packed by the worker (snapshot/packs.py)."""

    section: str
    keys: tuple[str, ...]
    versions: tuple[int | None, ...]
    sizes: tuple[int, ...]
    pack: bytes
    hashes: tuple[int, ...] = ()  # of their URLs (owners.loc_hash): one URL belongs to one document


class Rejected(NamedTuple):
    """A source item refused, as its dead letter records it."""

    source: str  # <source name>:<item number>
    reason: str
    raw: bytes


@dataclass(slots=True)
class Parsed:
    runs: list[Run]
    rejects: list[Rejected]
    news: list[tuple[str, str, Article]] = field(default_factory=list)  # (section, key, article), in order

    @property
    def documents(self) -> int:
        return sum(len(run.keys) for run in self.runs)


INVALID = "__invalid__"  # a source row carrying this field is refused with its value as the reason


def parse_chunk(rules: Rules, chunk: Chunk) -> Parsed:
    """Validate, render and pack one chunk of source documents (runs in a worker process).

    Runs of common documents go through `fast_rows` (C) whole; each item it leaves, and every item without it,
    through the Python code below, which gives every refusal its reason. Either way a section's documents stay
    in source order: the shard assignment and the duplicates' resolution depend on it.
    """
    rejects: list[Rejected] = []
    articles: list[tuple[str, str, Article]] = []
    by_section: dict[str, list[tuple[Any, ...]]] = {}
    items = chunk.split()
    i = 0
    while i < len(items):
        if fast_rows is not None:
            i = fast_rows(
                items, i, rules.allowed_hosts, orjson.loads, by_section, not rules.ignore_extra_fields, rules.max_size
            )
            if i == len(items):
                break
        n, found = chunk.first + i, payload(items[i])
        i += 1
        if found is None:
            continue
        try:
            if isinstance(found, bytes) and len(found) > MAX_DOCUMENT_BYTES:  # as `sitemaps apply` refuses it
                raise InvalidDocument(f"line is {len(found)} bytes, at most {MAX_DOCUMENT_BYTES} allowed")
            obj = load_json(found) if isinstance(found, bytes) else found
            if isinstance(obj, dict) and INVALID in obj:  # a source row that makes no document (rebuild_input.py)
                raise InvalidDocument(str(obj[INVALID]))
            if isinstance(obj, dict) and obj.get("op", "upsert") != "upsert":
                raise InvalidDocument(f"a rebuild source holds documents, not {obj.get('op')!r} events")
            row = document_row(obj, rules)
            if obj.get("news") is not None:  # never taken by `fast_rows`
                articles.append((row[0], row[1], parse_news(obj["news"], row[3])))
        except InvalidDocument as exc:
            raw = found if isinstance(found, bytes) else orjson.dumps(found, default=str)
            rejects.append(Rejected(f"{chunk.name}:{n}", str(exc), raw))
            continue
        docs = by_section.get(row[0])
        if docs is None:
            docs = by_section[row[0]] = []
        docs.append(row[1:])
    runs = []
    for section, docs in by_section.items():
        columns = list(zip(*docs, strict=True))  # transposed in C: keys, versions, locs, ... (packs.Columns)
        runs.append(
            Run(section, columns[0], columns[1], columns[5], pack(columns), tuple(map(owners.loc_hash, columns[2])))
        )
    return Parsed(runs, rejects, articles)


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


class SourceShrank(RuntimeError):
    """A rebuild's source holds far fewer documents than the manifest it would replace."""


class Rebuilder:
    def __init__(
        self, manifest: Manifest, rules: Rules, limits: Limits, workers: int = 2, max_shrink: float = MAX_SHRINK
    ) -> None:
        self.manifest = manifest
        self.max_shrink = check_max_shrink(max_shrink)
        self.rules = limits.fitted(rules)
        self.limits = limits
        self.workers = workers
        self.runs = 0  # runs taken so far: a run's claims are ordered after every earlier run's
        self.staging = Staging(manifest)

    def rebuild(self, source: Iterable[Chunk], progress: Callable[[int], None] | None = None) -> Counts:
        """Load every document of `source` into a new manifest and swap it in. Returns the counts.

        Events wait meanwhile (`Manifest.locks.rebuild`), and a second rebuild of the same manifest is refused.
        """
        with self.manifest.locks.rebuild():
            return self._rebuild(source, progress)

    def _rebuild(self, source: Iterable[Chunk], progress: Callable[[int], None] | None) -> Counts:
        self.staging.create()
        placer = Placer(self.limits.max_urls)
        counts = Counts()
        totals: ShardTotals = {}  # of the shards when full
        sections_state: dict[str, OpenShard] = {}
        batch = LoadBatch()
        workers = max(1, self.workers)
        # Loads run in a thread of their own (sqlite3 and psycopg release the GIL while the database works), so
        # this thread goes on taking the workers' results meanwhile; at most LOADS_AHEAD batches wait.
        loads: deque[Future[None]] = deque()
        with worker_pool(workers) as pool, ThreadPoolExecutor(1, thread_name_prefix="sitemaps-load") as loader:
            results = bounded_map(pool, _parse_with_rules(self.rules), source, workers * IN_FLIGHT)
            for parsed in results:
                for run in parsed.runs:
                    self._add(batch, run, sections_state, totals)
                batch.letters += parsed.rejects
                batch.news += [placer.row(*found) for found in parsed.news]
                documents = parsed.documents
                counts.applied += documents
                counts.rejected += len(parsed.rejects)
                if batch.size >= LOAD_ROWS:
                    loads.append(loader.submit(self._load, batch))
                    batch = LoadBatch()
                    if len(loads) > LOADS_AHEAD:
                        loads.popleft().result()  # raises what the load raised
                if progress is not None:
                    progress(documents + len(parsed.rejects))
            loads.append(loader.submit(self._load, batch))
            while loads:
                loads.popleft().result()
        if counts.applied == 0:  # never swap an empty manifest in: the next publish would drop the whole site
            self.staging.drop()
            raise EmptyManifest(f"no valid document in the source ({counts}): the manifest is left as it was")
        self._check_shrink(counts)
        checkpoint("rebuild-swap")
        for section, st in sections_state.items():
            totals[section, st.shard_no] = (st.urls, st.size)
        counts.stale, refused = self._finish(totals)
        counts.applied -= counts.stale + refused
        counts.rejected += refused
        return counts

    def _check_shrink(self, counts: Counts) -> None:
        """Refuse a source far smaller than the manifest it would replace, before the swap: nothing is lost.

        The publish checks the same against the live generation (`Publisher`); this check keeps the manifest.
        """
        before = self.manifest.reader.url_count()  # appliers wait for the rebuild lock: nothing changes it meanwhile
        if shrinks_too_far(before, counts.applied, self.max_shrink):
            self.staging.drop()
            raise SourceShrank(
                f"the source holds {counts.applied:,} valid documents and the manifest {before:,} URLs: this "
                f"rebuild would remove {before - counts.applied:,} of them, more than the {self.max_shrink:.0%} "
                "allowed. The manifest is left as it was (a truncated source, or a query that stopped early?); "
                "raise --max-shrink (SITEMAPS_MAX_SHRINK; 1 allows any) to replace it anyway"
            )

    def _add(self, batch: LoadBatch, run: Run, state: dict[str, OpenShard], full: ShardTotals) -> None:
        """Give a run's documents their shards, filling the section's open shard in source order, and queue
        their rows and packs (one pack row per shard the run reaches)."""
        section, sizes = run.section, run.sizes
        st = state.get(section)
        if st is None:
            st = state[section] = OpenShard()
        max_urls = self.limits.max_urls
        max_bytes = self.limits.max_bytes - SHARD_OVERHEAD
        count, size = len(sizes), sum(sizes)
        self.runs += 1
        batch.claims.append((section, self.runs << 32, run.keys, run.hashes))
        st.packs += 1
        seq = st.packs
        batch.size += count
        if st.urls + count <= max_urls and st.size + size <= max_bytes:  # the whole run fits: the common case
            st.urls += count
            st.size += size
            batch.add(section, st.shard_no, seq, run, 0, count)
            return
        start = 0
        shard_no, urls, used = st.shard_no, st.urls, st.size  # locals in the loop over every document
        for i, size in enumerate(sizes):
            if urls >= max_urls or used + size > max_bytes:  # Limits.fits, inlined
                full[section, shard_no] = (urls, used)
                if i > start:
                    batch.add(section, shard_no, seq, run, start, i)
                start = i
                shard_no += 1
                urls = used = 0
            urls += 1
            used += size
        st.shard_no, st.urls, st.size = shard_no, urls, used
        batch.add(section, shard_no, seq, run, start, count)

    def _load(self, batch: LoadBatch) -> None:
        """Insert a packed documents row per document, and the packs."""
        checkpoint("rebuild-load")  # the workers are still running
        self.staging.load(batch.documents, batch.packs, batch.claims, batch.letters, batch.news)

    def _finish(self, totals: ShardTotals) -> tuple[int, int]:
        """Remove duplicate keys and second claims of a URL, index, count shards, swap the staging tables in.
        Returns (duplicates removed, documents refused for a URL an earlier one holds).

        `totals` are the shards' URLs and bytes as loaded: right unless documents had to be removed.
        """
        staging = self.staging
        suffix = os.urandom(4).hex()
        duplicates = 0
        cache: dict[tuple[str, int], list[PackRow]] = {}
        self._kept: dict[tuple[str, str], int] = {}  # a repeated key -> the URL hash of the copy kept
        # The index builds write tens of bytes per document: their copy back into the database file runs beside
        # the publish that follows, not in the commit (figures: docs/performance.md).
        with self.manifest.write(copy_back=False) as conn:
            # The workers are idle by now: their cores are free for the index builds' sorter threads.
            staging.begin_index_builds(conn, self.workers)
            staging.index_shards(conn, suffix)
            if not staging.index_keys(conn, suffix):  # the source repeated some keys: keep one copy of each
                for section, key in staging.repeated_keys(conn):
                    duplicates += self._keep_one(conn, section, key, cache)
                if not staging.index_keys(conn, suffix):
                    raise AssertionError("a key still repeats after keeping one copy of each")
            refused = self._one_per_url(conn, suffix, cache)
            staging.swap_in(conn, None if duplicates or refused else totals)  # counted again only then
            staging.end_index_builds(conn)
        return duplicates, refused

    def _keep_one(self, conn: Connection, section: str, key: str, cache: dict[tuple[str, int], list[PackRow]]) -> int:
        """Keep the copy of a repeated key that applying the source's lines in order would keep: a copy with a
        version no newer than the kept one's is stale; one without a version replaces it (the version stays).
        Returns the copies removed."""
        copies = []  # (shard_no, seq, position, version, size) in source order: shards and packs fill in order
        for n in self.staging.shards_of(conn, section, key):
            for seq, a, b, data in self._packs_of(conn, section, n, cache):
                keys, versions, locs, _lastmods, _stamps, sizes, _xmls = unpack(data)
                copies += [(n, seq, i, versions[i], sizes[i], locs[i]) for i in range(a, b) if keys[i] == key]
        kept, version = copies[0], copies[0][3]
        for copy in copies[1:]:
            if copy[3] is not None and version is not None and copy[3] <= version:
                continue
            kept, version = copy, copy[3] if copy[3] is not None else version
        n, seq, position, _v, size, loc = kept
        self._kept[section, key] = owners.loc_hash(loc)
        self.staging.delete_document(conn, section, key)
        self.staging.insert_document(conn, section, key, n, version, size, self._kept[section, key])
        # Every other copy is blanked in its pack, so each shard's packs hold exactly its documents (what lets an
        # untouched shard render from its packs alone: `Manifest.reader.shard_rows`).
        for m in sorted({c[0] for c in copies if c is not kept}):
            stale = {c[1] for c in copies if c is not kept and c[0] == m}
            for pack_seq, _a, _b, data in self._packs_of(conn, section, m, cache):
                if pack_seq in stale:
                    self.staging.set_pack(
                        conn, section, m, pack_seq, without(data, key, position if (m, pack_seq) == (n, seq) else None)
                    )
            cache.pop((section, m))
        return len(copies) - 1

    def _one_per_url(self, conn: Connection, suffix: str, cache: dict[tuple[str, int], list[PackRow]]) -> int:
        """Leave each URL to the first document that claims it in the source; dead-letter every later claimant
        (naming the holder), then index the claims. Returns the documents refused."""
        if self.staging.index_claims(conn, suffix):
            return 0
        # A URL claimed twice (or a repeated key's claims): only then, scans.
        claims = self.staging.repeated_claims(conn)
        holders: dict[int, tuple[str, str, int]] = {}
        letters: list[tuple[str, str, bytes]] = []
        for h, section, key, order in claims:
            if self._kept.get((section, key), h) != h:
                continue  # a repeated key's copy that was not kept: it claims nothing
            holder = holders.setdefault(h, (section, key, order))
            if holder[:2] != (section, key):
                loc = self._drop(conn, section, key, cache)
                letters.append(
                    (
                        "rebuild",
                        owners.refusal(loc, owners.Holder(*holder[:2])),
                        orjson.dumps({"section": section, "key": key, "loc": loc}),
                    )
                )
        self.staging.keep_claims(conn, holders)
        self.manifest.dead_letters.add(conn, letters)
        if not self.staging.index_claims(conn, suffix):
            raise AssertionError("a URL is still claimed twice after leaving each its first claim")
        return len(letters)

    def _drop(self, conn: Connection, section: str, key: str, cache: dict[tuple[str, int], list[PackRow]]) -> str:
        """Take a document out of the staged manifest (its row, its packs' entries); returns its URL."""
        (shard_no,) = self.staging.shards_of(conn, section, key)
        self.staging.delete_document(conn, section, key)
        loc = ""
        for seq, a, b, data in self._packs_of(conn, section, shard_no, cache):
            cols = unpack(data)
            if key in cols[0][a:b]:
                loc = cols[2][cols[0].index(key, a, b)]
                self.staging.set_pack(conn, section, shard_no, seq, without(data, key, None))
        cache.pop((section, shard_no), None)
        return loc

    def _packs_of(
        self, conn: Connection, section: str, shard_no: int, cache: dict[tuple[str, int], list[PackRow]]
    ) -> list[PackRow]:
        """(seq, entry_from, entry_to, data) of a shard's packs; a few shards are kept, as duplicates cluster."""
        found = cache.get((section, shard_no))
        if found is None:
            if len(cache) >= 4:
                cache.pop(next(iter(cache)))
            found = cache[section, shard_no] = self.staging.shard_packs(conn, section, shard_no)
        return found


@dataclass(slots=True)
class OpenShard:
    """A section's shard being filled by a rebuild, in source order."""

    shard_no: int = 1
    urls: int = 0
    size: int = 0  # its uncompressed bytes, header aside
    packs: int = 0  # packs made for the section so far: the next pack's seq


# A shard_packs row, in its columns' order: (section, shard_no, seq, entry_from, entry_to, data), entries
# [entry_from, entry_to) of a run's pack, all in shard `shard_no`. A plain tuple: it goes to the database as it is.
PackRange = tuple[str, int, int, int, int, bytes]


@dataclass(slots=True)
class LoadBatch:
    """What the next load transaction writes."""

    documents: list[DocumentRun] = field(default_factory=list)
    size: int = 0  # documents in `documents`
    packs: list[PackRange] = field(default_factory=list)
    claims: list[url_claims.ClaimRun] = field(default_factory=list)
    letters: list[Rejected] = field(default_factory=list)
    news: list[StagedArticle] = field(default_factory=list)

    def add(self, section: str, shard_no: int, seq: int, run: Run, start: int, stop: int) -> None:
        """Entries [start, stop) of a run, all in one shard: their documents rows and their range of its pack."""
        # A tuple's whole slice is the tuple itself: the common case copies nothing.
        self.documents.append(
            (
                section,
                shard_no,
                run.keys[start:stop],
                run.versions[start:stop],
                run.sizes[start:stop],
                run.hashes[start:stop],
            )
        )
        self.packs.append((section, shard_no, seq, start, stop, run.pack))


class _parse_with_rules:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def __call__(self, chunk: Chunk) -> Parsed:
        return parse_chunk(self.rules, chunk)
