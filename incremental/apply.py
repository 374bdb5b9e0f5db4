"""Apply events to the manifest: one transaction per batch, each touched shard's revision bumped once.

A document keeps its shard for life; a new one fills its section's open shard. The one exception: an update
that would push its shard over the byte limit moves that document to the open shard (dirtying both).

Large batches are validated and rendered in worker processes, a chunk per task; this process reads what the
manifest holds for the chunks' documents, applies the chunks already back, in order, and writes the result.
Parsing needs nothing from the manifest, so it may start before the write lock is taken: the service hands
the next batch to the workers (`prepare`) while it applies this one.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Final, cast

from sqlalchemy import Connection

from sitemap_keeper.incremental.events import (
    ARTICLE,
    DELETE_FIELDS,
    KEY,
    LOC,
    NEWS_FIELDS,
    SECTION,
    VERSION,
    DeleteRow,
    NewsUpsertRow,
    ParsedEvents,
    UpsertRow,
    parse_events,
)
from sitemap_keeper.snapshot import owners
from sitemap_keeper.snapshot.crashpoints import checkpoint
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest, document_rows, url_claims
from sitemap_keeper.snapshot.manifest.document_rows import ROW_LOC, ROW_SIZE, STORED_SHARD_NO, Ident, Row, Stored
from sitemap_keeper.snapshot.manifest.errors import RebuildRunning
from sitemap_keeper.snapshot.manifest.news_rows import news_sections
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.news import Article, Change, write_changes
from sitemap_keeper.snapshot.owners import Holder
from sitemap_keeper.snapshot.workers import worker_pool

log = logging.getLogger(__name__)

PARSE_CHUNK = 1_000  # events per task sent to a worker: small enough to start applying early
PARALLEL_MIN = 2_000  # batches from this size on are parsed in worker processes, smaller ones here
# The applying process is the bound and the workers have time to spare (they parse the next batch while this
# one is applied): when both want the same core, the applying process goes first.
WORKER_NICENESS = 10
RELEASE_ROUNDS = 8  # rounds of waiting claims applied per batch (each may free the URL its document left)

Parser = Callable[[Rules, Sequence[bytes]], ParsedEvents]  # picklable: it runs in the worker processes
Current = tuple[int | None, int | None, int, bool, int | None]  # a document as the batch leaves it, its fields at:
AT_SHARD_NO: Final = 0
AT_VERSION: Final = 1
AT_SIZE: Final = 2
AT_LIVE: Final = 3
AT_LOC_HASH: Final = 4  # its URL's hash (None: not known, or not live)


def _at_url(cur: Current | None, loc_hash: int) -> bool:
    """Whether the document is live at the URL of `loc_hash`: then it holds that URL, and no claim is read."""
    return cur is not None and cur[AT_LIVE] and cur[AT_LOC_HASH] == loc_hash


class _Shard:
    __slots__ = ("byte_count", "touched", "url_count")

    def __init__(self, url_count: int, byte_count: int) -> None:
        self.url_count = url_count
        self.byte_count = byte_count
        self.touched = False


class Applier:
    def __init__(
        self,
        manifest: Manifest,
        rules: Rules,
        limits: Limits,
        workers: int = 0,
        parallel_min: int = PARALLEL_MIN,
        parse_chunk: int = PARSE_CHUNK,
        parser: Parser = parse_events,
    ) -> None:
        self.manifest = manifest
        self.parser = parser  # raw events to rows: the native format, or another (incremental/debezium.py)
        self.rules = limits.fitted(rules)
        self.limits = limits
        self.workers = workers
        self.parallel_min = parallel_min
        self.parse_chunk = parse_chunk
        self._pool: ProcessPoolExecutor | None = None

    # -- worker processes -----------------------------------------------------------------------------------

    def start_workers(self) -> None:
        """Start the worker processes now rather than on the first large batch (a service's first batch)."""
        pool = self._workers()
        if pool is not None:
            for f in [pool.submit(self.parser, self.rules, []) for _ in range(self.workers)]:
                f.result()

    def worker_pids(self) -> list[int]:
        return sorted(self._pool._processes) if self._pool is not None else []  # for the benchmark's CPU figures

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _workers(self) -> ProcessPoolExecutor | None:
        if self.workers < 1:
            return None
        if self._pool is None:
            self._pool = worker_pool(self.workers, niceness=WORKER_NICENESS)
        return self._pool

    def prepare(self, raws: list[bytes]) -> Prepared:
        """Hand a batch's events to the parsing workers now; apply it later with `apply_raw(prepared=...)`.

        Parsing needs nothing from the manifest, so the service prepares the next batch while it applies this
        one: the workers validate and render while this process writes and commits.
        """
        pool = self._workers() if len(raws) >= self.parallel_min else None
        size = self.parse_chunk
        # A parser may send a chunk in a form of its own, fewer bytes to copy (incremental/debezium.py).
        shipped: Callable[[Sequence[bytes]], Sequence[bytes]] = getattr(self.parser, "shipped", _as_sent)
        tasks = (
            []
            if pool is None
            else [
                (i, pool.submit(self.parser, self.rules, shipped(raws[i : i + size])))
                for i in range(0, len(raws), size)
            ]
        )
        return Prepared(raws, size, tasks)

    def _parsed(self, prepared: Prepared) -> Iterator[tuple[int, ParsedEvents]]:
        """(offset in the batch, parsed chunk), in order."""
        if not prepared.tasks:
            yield 0, self.parser(self.rules, prepared.raws)
            return
        size = prepared.chunk
        try:
            for i, task in prepared.tasks:
                try:
                    parsed = task.result()
                except BrokenProcessPool:  # a worker died (killed, out of memory): parse here, restart later
                    log.warning("a parsing worker died; parsing events %d-%d in the applying process", i, i + size)
                    self._drop_pool()
                    parsed = self.parser(self.rules, prepared.raws[i : i + size])
                yield i, parsed
        finally:
            prepared.discard()

    # -- applying -------------------------------------------------------------------------------------------

    def apply_raw(
        self,
        items: Iterable[tuple[str, bytes]],
        extra: Callable[[Connection], None] | None = None,
        prepared: Prepared | None = None,
    ) -> Counts:
        """Validate and apply raw events, (source, bytes) each, in one transaction.

        Invalid ones go to the dead-letter table in the same transaction; `extra` runs in it too (the Kafka
        consumer stores its offsets there, which is what makes the effect exactly-once). `prepared`: these
        items, already handed to the workers by `prepare`.
        """
        with _collector_paused():
            return self._apply_raw(items, extra, prepared)

    def _apply_raw(
        self, items: Iterable[tuple[str, bytes]], extra: Callable[[Connection], None] | None, prepared: Prepared | None
    ) -> Counts:
        items = items if isinstance(items, list) else list(items)
        if prepared is None:
            prepared = self.prepare([raw for _source, raw in items])
        letters: list[tuple[str, str, bytes]] = []
        with self.manifest.write() as conn:
            if self.manifest.locks.rebuild_running(conn):  # its swap would drop what is applied now: nothing is
                prepared.discard()
                raise RebuildRunning(
                    "a rebuild is running on this manifest: events are applied once it has swapped its tables in"
                )
            batch = ApplyBatch(conn, self.limits, self.manifest)
            for start, parsed in self._parsed(prepared):
                for i, reason in parsed.rejects:
                    source, raw = items[start + i]
                    letters.append((source, reason, raw))
                batch.add(parsed.ops, partial(_origin, items, start, parsed.origins))
            self._release(batch)
            batch.write_waiting()
            batch.write(self.manifest)
            self.manifest.dead_letters.add(conn, letters)
            if extra is not None:
                extra(conn)
            checkpoint("apply-commit")  # a kill here: the batch is rolled back whole
        batch.counts.rejected += len(letters)
        return batch.counts

    def _release(self, batch: ApplyBatch) -> None:
        """Apply the waiting claims of the URLs this batch freed, oldest first; a claim applied may free
        another URL (its old one): a few rounds."""
        holders: Iterable[Ident] = list(batch.rows)
        for _round in range(RELEASE_ROUNDS):
            moved: list[Ident] = []
            for wait in batch.free_claims(holders):
                parsed = self.parser(self.rules, [wait.raw])
                ops = [] if parsed.rejects else [op for op in parsed.ops if (op[SECTION], op[KEY]) == wait.ident]
                if batch.retry(wait, ops):
                    moved.append(wait.ident)
            if not moved:
                return
            holders = moved


def _as_sent(raws: Sequence[bytes]) -> Sequence[bytes]:
    return raws


def _origin(items: list[tuple[str, bytes]], start: int, origins: list[int], n: int) -> tuple[str, bytes]:
    """The source and raw bytes of a parsed chunk's op `n`."""
    return items[start + origins[n]]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collection while a batch is applied (resumed once its objects are freed).

    A batch holds its objects until it commits; a collector counting allocations (`tune_gc`) would walk them
    all again and again to find no garbage (its cost: docs/performance.md). What a batch leaves in cycles is
    collected after it.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(slots=True)
class Prepared:
    """A batch's raw events and the worker tasks parsing them, chunk by chunk (none: parsed when applied)."""

    raws: list[bytes]
    chunk: int
    tasks: list[tuple[int, Future[ParsedEvents]]]

    def discard(self) -> None:
        """Drop what is still queued (the batch is applied, or will be read again)."""
        for _i, task in self.tasks:
            task.cancel()


Origin = Callable[[int], tuple[str, bytes]]  # an op's index in `ApplyBatch.add` -> its event's source and raw bytes


@dataclass(slots=True)
class _Waiting:
    """A batch's view of the claims waiting for URLs (snapshot/owners.py)."""

    watch: bool  # whether any claim waits (then events applied replace their key's older claims)
    index: dict[Ident, list[int]] | None  # the stored claims' documents and URL hashes (None: too many to hold)
    of: dict[Ident, list[url_claims.Wait]] = field(default_factory=dict)  # by document, of those loaded or made here
    replaced: dict[Ident, int | None] = field(default_factory=dict)  # keys applied, not loaded: newest version
    gone: dict[tuple[int, str, str], url_claims.Wait] = field(default_factory=dict)  # stored ones to delete
    letters: list[tuple[str, str, bytes] | None] = field(default_factory=list)  # refusals' letters, to write
    withdrawn: list[int] = field(default_factory=list)  # written letters to delete
    seq: int | None = None  # the next claim's place in the queue

    @staticmethod
    def of_table(conn: Connection) -> _Waiting:
        rows = url_claims.waiting_index(conn, owners.INDEX_MAX + 1)
        index: dict[Ident, list[int]] | None = None
        if len(rows) <= owners.INDEX_MAX:
            index = {}
            for h, section, key in rows:
                index.setdefault((section, key), []).append(h)
        return _Waiting(bool(rows), index)

    def stored(self, ident: Ident) -> bool:
        """Whether this document may have stored claims waiting."""
        return self.index is None or ident in self.index

    def drop(self, wait: url_claims.Wait) -> None:
        """Take a claim out of the table."""
        if wait.stored:
            self.gone[wait.row_key] = wait

    def withdraw(self, wait: url_claims.Wait, counts: Counts, applied: bool) -> None:
        """The claim is applied, or replaced by a newer event of its key: the dead letters it stands for go,
        their events counted stale (the claim's own one applied, if it is)."""
        self.withdrawn += wait.letters
        for n in wait.fresh:
            self.letters[n] = None
        counts.stale += len(wait.letters) + len(wait.fresh) - applied


class ApplyBatch:
    """One transaction's worth of events: documents and shards as the events leave them, written at the end."""

    def __init__(self, conn: Connection, limits: Limits, manifest: Manifest) -> None:
        self.conn = conn
        self.limits = limits
        self.manifest = manifest
        self.owners: dict[int, Ident | None] = {}  # URL hash -> its claimant as recorded or claimed here
        self.claims: dict[int, Ident] = {}  # claims this batch records
        self.counts = Counts()
        self.stored: dict[Ident, Stored] = {}  # loaded from the manifest
        self.docs: dict[Ident, Current] = {}  # as this batch leaves them
        self.rows: dict[Ident, Row] = {}
        self.shards: dict[tuple[str, int], _Shard] = {}
        self.open_shards: dict[str, int] = {}
        self.known_sections: set[str] = set()
        self.news: list[Change] = []  # articles set or taken away, in order (snapshot/news.py)
        self.news_sections = news_sections(conn)  # where an upsert without news may take an article away
        self.waiting = _Waiting.of_table(conn)

    def add(
        self, ops: Sequence[UpsertRow | NewsUpsertRow | DeleteRow], origin: Origin | None = None
    ) -> list[tuple[int, str]]:
        """Apply events in order. Returns the upserts refused for a URL another document holds: (index, reason).
        With `origin` (an op's index -> its source and raw event), each refused one waits for the URL and is
        dead-lettered here; without, it is only returned (a waiting claim tried again)."""
        refused: list[tuple[int, str]] = []
        if not ops:
            return refused
        hashes = [owners.loc_hash(op[LOC]) if len(op) != DELETE_FIELDS else 0 for op in ops]
        self._load(ops, hashes)
        docs, rows, counts, claimants = self.docs, self.rows, self.counts, self.owners
        watch = self.waiting.watch
        news, news_sections = self.news, self.news_sections
        for n, op in enumerate(ops):
            section, key, version = op[SECTION], op[KEY], op[VERSION]
            ident = (section, key)
            cur = docs.get(ident)
            if cur is not None and version is not None and cur[AT_VERSION] is not None and version <= cur[AT_VERSION]:
                counts.stale += 1
                continue
            if (
                len(op) != DELETE_FIELDS
                and not _at_url(cur, hashes[n])
                and (holder := claimants.get(hashes[n])) != ident
            ):  # a URL new to this document
                if holder is not None and self._holds(holder, op[LOC]):
                    refused.append((n, owners.refusal(op[LOC], holder)))
                    if origin is not None:
                        self._wait(op[LOC], ident, version, hashes[n], origin(n), refused[-1][1])
                        watch = True
                    continue
                claimants[hashes[n]] = self.claims[hashes[n]] = ident
            if watch:
                self._applied(ident, version)
            if cur is not None:
                if version is None:
                    version = cur[AT_VERSION]
                if cur[AT_LIVE] and cur[AT_SHARD_NO] is not None:  # leave the old place
                    old = self._shard(section, cur[AT_SHARD_NO])
                    old.url_count -= 1
                    old.byte_count -= cur[AT_SIZE]
                    old.touched = True
            counts.applied += 1
            if len(op) == NEWS_FIELDS:
                news.append((section, key, cast("Article", op[-1])))  # its Article, last
                news_sections.add(section)
            elif section in news_sections:
                news.append((section, key, None))
            if len(op) == DELETE_FIELDS:  # a deletion: a tombstone keeps the version and the shard
                shard_no = cur[AT_SHARD_NO] if cur is not None else None
                docs[ident] = (shard_no, version, 0, False, None)
                if cur is not None or version is not None:
                    rows[ident] = (section, key, shard_no, version, None, None, None, 0, None, None)
                continue
            loc, lastmod, lastmod_ts, size, xml = op[LOC:ARTICLE]
            shard_no = self._place(section, size, cur[AT_SHARD_NO] if cur is not None else None)
            st = self._shard(section, shard_no)
            st.url_count += 1
            st.byte_count += size
            st.touched = True
            docs[ident] = (shard_no, version, size, True, hashes[n])
            rows[ident] = (section, key, shard_no, version, loc, lastmod, lastmod_ts, size, xml, hashes[n])
        return refused

    # -- claims waiting for a URL (snapshot/owners.py) -----------------------------------------------------

    def _waits_of(self, ident: Ident) -> list[url_claims.Wait]:
        """The claims of a document waiting, as this batch leaves them (its stored ones loaded on first use)."""
        w = self.waiting
        found = w.of.get(ident)
        if found is None:
            found = w.of[ident] = []
            applied = ident in w.replaced
            mark = w.replaced.pop(ident, None)
            for wait in url_claims.waiting_of(self.conn, [ident]) if w.stored(ident) else ():
                if applied and owners.replaces(mark, wait.version):
                    w.drop(wait)
                    w.withdraw(wait, self.counts, applied=False)
                else:
                    found.append(wait)
        return found

    def _applied(self, ident: Ident, version: int | None) -> None:
        """An event of this document is applied: its older waiting claims are replaced."""
        w = self.waiting
        waits = w.of.get(ident)
        if waits is None and not w.stored(ident):
            return
        if waits is None:  # not loaded: the rows go at the end (`write_waiting`)
            if ident not in w.replaced or version is None:
                w.replaced[ident] = version
            elif (mark := w.replaced[ident]) is not None:
                w.replaced[ident] = max(version, mark)
            return
        kept = []
        for wait in waits:
            if owners.replaces(version, wait.version):
                w.drop(wait)
                w.withdraw(wait, self.counts, applied=False)
            else:
                kept.append(wait)
        w.of[ident] = kept

    def _wait(
        self, loc: str, ident: Ident, version: int | None, h: int, origin: tuple[str, bytes], reason: str
    ) -> None:
        """A refused claim: dead-lettered, and waiting for the URL in place of its key's older claims."""
        w = self.waiting
        w.watch = True
        source, raw = origin
        w.letters.append((source, reason, raw))
        kept, letters, fresh = [], list[int](), [len(w.letters) - 1]
        for wait in self._waits_of(ident):
            if owners.replaces(version, wait.version):
                letters += wait.letters
                fresh += wait.fresh
                w.drop(wait)
            else:
                kept.append(wait)
        if all(wait.loc_hash != h for wait in kept):  # else a newer claim of its key waits for this URL
            if w.seq is None:
                w.seq = url_claims.next_seq(self.conn)
            kept.append(url_claims.Wait(h, *ident, w.seq, version, loc, source, raw, letters, fresh))
            w.seq += 1
        w.of[ident] = kept

    def free_claims(self, holders: Iterable[Ident]) -> list[url_claims.Wait]:
        """The waiting claims whose URL is free (`holders`: the documents whose URLs may have been freed since
        the last look), oldest first."""
        w = self.waiting
        if not w.watch:
            return []
        if w.index is None:
            for wait, holder in url_claims.waiting_for(self.conn, holders):
                self.owners.setdefault(wait.loc_hash, holder)
                self._waits_of(wait.ident)
        else:
            self._load_owners({h for hashes in w.index.values() for h in hashes})
            touched = set(holders)
            for ident, hashes in w.index.items():
                if any(self.owners[h] in touched for h in hashes):
                    self._waits_of(ident)
        waits = [wait for waits in w.of.values() for wait in waits]
        self._load_owners({wait.loc_hash for wait in waits})
        return sorted((wait for wait in waits if self._free(wait)), key=lambda wait: wait.seq)

    def _load_owners(self, hashes: set[int]) -> None:
        """The recorded claimants of these URL hashes not known here yet (None: no claimant)."""
        unknown = hashes - self.owners.keys()
        if unknown:
            self.owners.update(url_claims.holders(self.manifest, self.conn, unknown))
            self.owners.update(dict.fromkeys(unknown - self.owners.keys()))

    def _free(self, wait: url_claims.Wait) -> bool:
        holder = self.owners.get(wait.loc_hash)
        return holder is None or holder == wait.ident or not self._holds(holder, wait.loc)

    def retry(self, wait: url_claims.Wait, ops: Sequence[UpsertRow | NewsUpsertRow | DeleteRow]) -> bool:
        """Apply a waiting claim's event again (no ops: it is no longer valid, and waits no more). Returns
        whether it was applied: then the dead letters it stands for are withdrawn. Still refused, it waits on;
        stale, it waits no more."""
        w, counts = self.waiting, self.counts
        waits = w.of.get(wait.ident, [])
        if all(other is not wait for other in waits):
            return False  # replaced by an event of its key applied before it
        w.of[wait.ident] = [other for other in waits if other is not wait]
        applied, stale = counts.applied, counts.stale
        if ops and self.add(ops):
            w.of[wait.ident].append(wait)
            return False
        counts.stale = stale  # counted when it was refused
        w.drop(wait)
        if ops:
            w.withdraw(wait, counts, applied=counts.applied > applied)
        return counts.applied > applied

    def _holds(self, holder: Ident, loc: str) -> bool:
        """Whether `holder` is live at `loc`, as this batch leaves it."""
        row = self.rows.get(holder)
        if row is not None:
            return bool(row[ROW_SIZE]) and row[ROW_LOC] == loc
        return owners.current_loc(self.manifest, self.conn, Holder(*holder)) == loc

    def _shard(self, section: str, shard_no: int) -> _Shard:
        st = self.shards.get((section, shard_no))
        if st is None:
            st = self.shards[(section, shard_no)] = _Shard(0, 0)
        return st

    def _place(self, section: str, size: int, preferred: int | None) -> int:
        fits = self.limits.fits
        if preferred is not None:
            st = self._shard(section, preferred)
            if fits(st.url_count, st.byte_count, size):
                return preferred
        n = self.open_shards.setdefault(section, 1)
        st = self._shard(section, n)
        if not fits(st.url_count, st.byte_count, size):
            n += 1
            self.open_shards[section] = n
        return n

    def _load(self, ops: Sequence[UpsertRow | NewsUpsertRow | DeleteRow], hashes: list[int]) -> None:
        """Take in the stored state of the documents first seen here, their shards and their sections, and the
        recorded claimants of the URLs their documents are not live at already (a live document holds its URL:
        an update that keeps it reads no claim)."""
        docs = self.docs
        fresh = {ident for op in ops if (ident := (op[SECTION], op[KEY])) not in docs}  # not `- docs.keys()`: a copy
        if fresh:
            self._load_documents(fresh)
        known = self.owners
        fresh_urls = {
            h
            for op, h in zip(ops, hashes, strict=True)
            if len(op) != DELETE_FIELDS and h not in known and not _at_url(docs.get((op[SECTION], op[KEY])), h)
        }
        if fresh_urls:
            known.update(url_claims.holders(self.manifest, self.conn, fresh_urls))
            known.update(dict.fromkeys(fresh_urls - known.keys()))

    def _load_documents(self, fresh: set[Ident]) -> None:
        docs, conn = self.docs, self.conn
        new_sections = sorted({s for s, _k in fresh} - self.known_sections)
        if new_sections:
            self.open_shards.update(self.manifest.placement.open_shards(conn, new_sections))
            self.known_sections.update(new_sections)
        stored = document_rows.load_all(conn.connection.driver_connection, conn.dialect.name, fresh)
        # `stored` holds exactly the fresh documents the manifest has (the others are new): taken in whole.
        self.stored.update(stored)
        docs.update({ident: state[STORED_SHARD_NO:] for ident, state in stored.items()})
        wanted = set(self.open_shards.items())
        wanted.update(
            {
                (section, state[STORED_SHARD_NO])
                for (section, _key), state in stored.items()
                if state[STORED_SHARD_NO] is not None
            }
        )
        self._load_shards(wanted - self.shards.keys())

    def _load_shards(self, wanted: set[tuple[str, int]]) -> None:
        for s, n, count, size in self.manifest.placement.shard_counts(self.conn, wanted):
            self.shards[(s, n)] = _Shard(count, size)

    def write_waiting(self) -> None:
        """Record this batch's waiting claims, their dead letters, and what left the table."""
        w = self.waiting
        if not w.watch:
            return
        for wait in url_claims.waiting_of(self.conn, w.replaced):  # of keys applied here, not loaded
            if owners.replaces(w.replaced[wait.ident], wait.version):
                w.drop(wait)
                w.withdraw(wait, self.counts, applied=False)
        new = [wait for waits in w.of.values() for wait in waits if not wait.stored]
        url_claims.write_waiting(self.conn, w.gone.values(), w.letters, new, w.withdrawn)
        self.counts.rejected += sum(letter is not None for letter in w.letters) - len(w.withdrawn)

    def write(self, manifest: Manifest) -> None:
        if not self.counts.applied:
            return
        conn = self.conn
        revision = Manifest.next_revision(conn)
        document_rows.write(manifest, conn, self.rows.values(), self.stored)
        url_claims.record(manifest, conn, self.claims)
        manifest.placement.write(
            conn,
            [(s, n, st.url_count, st.byte_count, revision) for (s, n), st in self.shards.items() if st.touched],
            list(self.open_shards.items()),
        )
        write_changes(manifest, conn, self.news, revision, self.limits.max_urls)
