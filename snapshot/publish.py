"""Publish: a new copy-on-write generation from the manifest, verified, then switched to by the router.

Order matters for crash safety. Nothing the router points at is ever written: shards are rendered or copied
into a new generation, indexes are written last, everything is verified and recorded, the generation is made
public, and only then is the router switched, in one atomic step. A crash before the switch leaves an
abandoned generation (pruned later); a crash after it leaves the new generation live and complete.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from sitemap_keeper.snapshot import generation, hold, naming, ownership
from sitemap_keeper.snapshot.crashpoints import checkpoint
from sitemap_keeper.snapshot.document import instant
from sitemap_keeper.snapshot.limits import MAX_SHRINK, Limits, check_max_shrink, shrinks_too_far
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.news_rows import live_expiries, record_expiries
from sitemap_keeper.snapshot.manifest.records import FileRecord, Generation, Shard
from sitemap_keeper.snapshot.news import NewsShard, capacity, plan_news, render_news
from sitemap_keeper.snapshot.refusals import EmptyManifest, ForeignLive, Held, SiteShrank
from sitemap_keeper.snapshot.render import IndexEntry, gzip_pieces, index_entry_size, index_xml, shard_pieces
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store
from sitemap_keeper.snapshot.verify import ShardCheck, check_index, verify_generation
from sitemap_keeper.snapshot.workers import in_worker, worker_pool

log = logging.getLogger(__name__)

# The crash points of a publish, in order (see snapshot.crashpoints).
STEPS = ("begin", "render", "copy", "indexes", "verify", "policy", "switch", "switched")
# Below this many dirty shards, rendering in this process beats starting worker processes.
POOL_THRESHOLD = 4


@dataclass(slots=True)
class RenderedShard:
    section: str
    shard_no: int
    revision: int
    url_count: int
    lastmod: str | None
    lastmod_ts: float | None
    data: bytes  # gzip-compressed


@dataclass(slots=True)
class Plan:
    live: str | None
    base_files: dict[str, FileRecord]
    render: list[Shard] = field(default_factory=list)
    copy: list[FileRecord] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # shards of the live generation that lost all URLs
    urls: int = 0  # in the manifest: what the new generation will hold
    now: float = 0.0  # the instant the news window is taken at
    news: list[NewsShard] = field(default_factory=list)  # news files to render (`copy` holds the others)
    news_expiry: float | None = None  # when the first news file copied goes stale (snapshot/news.py)

    @property
    def dirty(self) -> bool:
        return bool(self.render or self.dropped or self.news) or self.live is None or not self.base_files


@dataclass(slots=True)
class PublishResult:
    generation: str | None
    base: str | None
    rendered: int = 0
    copied: int = 0
    files: int = 0
    urls: int = 0
    seconds: float = 0.0
    message: str = ""


def plan(manifest: Manifest, live: str | None, full: bool = False, now: float | None = None) -> Plan:
    """Which shards must be rendered and which files can be brought unchanged from `live` (as the router said);
    the news files as they must read at `now` (default: the time now)."""
    base_files = manifest.generations.files(live) if live else {}
    result = Plan(live=live, base_files=base_files, now=time.time() if now is None else now)
    current_names = set()
    for shard in manifest.reader.shards():
        if shard.url_count == 0:
            continue
        name = naming.shard_name(shard.section, shard.shard_no)
        current_names.add(name)
        result.urls += shard.url_count
        old = base_files.get(name)
        if not full and old is not None and old.revision == shard.revision:
            result.copy.append(old)
        else:
            result.render.append(shard)
    result.dropped = sorted(
        name for name, f in base_files.items() if f.shard_no is not None and name not in current_names
    )
    news = plan_news(manifest, live, base_files, result.now, full)
    result.news, result.news_expiry = news.render, news.next_expiry
    result.copy += news.copy
    result.dropped += news.dropped
    return result


def render_shard(manifest: Manifest, section: str, shard_no: int, limits: Limits) -> RenderedShard | None:
    """Render one shard from a consistent snapshot of the manifest; None when it has no URLs left."""
    with manifest.read() as conn:
        revision = manifest.reader.revision(conn, section, shard_no)
        fragments, lastmods, stamps = manifest.reader.shard_rows(conn, section, shard_no)
    if revision is None or not fragments:
        return None
    newest = newest_lastmod(lastmods, stamps)
    check = ShardCheck(naming.shard_name(section, shard_no), limits)
    data = gzip_pieces(check.passing(shard_pieces(fragments)))
    check.close(len(fragments))
    return RenderedShard(
        section,
        shard_no,
        int(revision),
        len(fragments),
        newest.lastmod if newest else None,
        newest.stamp if newest else None,
        data,
    )


# More than a float timestamp's rounding error for any year the schema allows (about 30 µs at year 9999).
STAMP_SLACK = 1e-3


class Newest(NamedTuple):
    """A shard's newest lastmod, as written and as a timestamp."""

    stamp: float
    lastmod: str | None


def newest_lastmod(lastmods: list[str | None], stamps: list[float | None]) -> Newest | None:
    """The newest lastmod and its timestamp: found by the floats, decided exactly among those the floats cannot
    tell apart (instants a microsecond apart, in far years)."""
    known = [ts for ts in stamps if ts is not None]
    if not known:
        return None
    ts = max(known)
    close = [i for i, s in enumerate(stamps) if s is not None and s >= ts - STAMP_SLACK]
    best = close[0] if len(close) == 1 else max(close, key=lambda i: instant(lastmods[i]))
    stamp = stamps[best]
    assert stamp is not None
    return Newest(stamp, lastmods[best])


def _render_in_worker(args: tuple[str, int, Limits]) -> RenderedShard | None:
    return render_shard(in_worker(), *args)


class Publisher:
    def __init__(
        self,
        manifest: Manifest,
        store: Store,
        router: Router,
        base_url: str,
        limits: Limits | None = None,
        workers: int = 2,
        on_switch: Callable[[str, str | None], None] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        max_shrink: float = MAX_SHRINK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manifest = manifest
        self.store = store
        self.router = router
        self.base_url = naming.check_base_url(base_url)
        self.limits = limits or Limits()
        self.workers = workers
        self.on_switch = on_switch  # told (new, old) after a successful switch; its failures never fail a publish
        self.extra_files = dict(extra_files or {})  # small files put into every generation (IndexNow's key)
        self.max_shrink = check_max_shrink(max_shrink)  # of the live generation's URLs, in one publish
        self.on_progress: Callable[[int, int], None] | None = None  # told (shards put, shards to render)
        self.clock = clock  # the time the news window is taken at
        self._news_expiries: dict[str, float] = {}  # of the generation being built: news file -> stale from

    def reconcile(self) -> tuple[str | None, Generation | None]:
        """Make the manifest agree with the router: the router is the truth about what is live.
        Returns the live generation's id and its record (None if this manifest has none)."""
        live = self.router.current()
        gen = self.manifest.generations.get(live) if live is not None else None
        if gen is not None and gen.state != "live":
            self.manifest.generations.set_state(gen.id, "live")
        return live, gen

    def publish(self, full: bool = False) -> PublishResult:
        started = time.monotonic()
        with self.manifest.locks.publish():
            held = hold.current(self.manifest)
            if held is not None:
                raise Held(f"not publishing: the site is {held.describe()}; `sitemaps resume` releases it")
            live, gen = self.reconcile()
            if live is not None and gen is None and not full:
                # A new or wrong manifest (a data dir's default file, a mistyped URL) holds a fraction of the
                # site at best: its incremental publish would replace the whole live site with that fraction.
                raise ForeignLive(
                    f"the router serves generation {live}, which this manifest never published: a publish "
                    "would replace the live site with what this manifest holds. Check that the manifest is "
                    "the one that publishes this site (SITEMAPS_DATABASE_URL); to replace the site with "
                    "this manifest on purpose, publish --full (or rebuild)"
                )
            p = plan(self.manifest, live, full=full, now=self.clock())
            if not p.render and not p.copy:
                raise EmptyManifest("the manifest has no documents: refusing to publish an empty generation")
            if gen is not None and shrinks_too_far(gen.url_count, p.urls, self.max_shrink):
                raise SiteShrank(
                    f"generation {live} serves {gen.url_count:,} URLs and this manifest holds {p.urls:,}: "
                    f"publishing would remove {gen.url_count - p.urls:,} of them, more than the "
                    f"{self.max_shrink:.0%} allowed. The live site is left as it was (a replay of a topic that "
                    "no longer holds every document? a mass deletion upstream?); publish with --max-shrink 1 "
                    "(SITEMAPS_MAX_SHRINK) to remove them on purpose"
                )
            if not full and not p.dirty:
                return PublishResult(
                    None,
                    p.live,
                    seconds=time.monotonic() - started,
                    message=f"nothing to publish: generation {p.live} is up to date",
                )
            gen_id = generation.new_id(after=generation.newest(self.manifest.generations.latest_id(), p.live))
            self.manifest.generations.begin(gen_id, p.live)
            checkpoint("begin")
            ownership.create(self.store, ownership.site_id(self.manifest), gen_id)
            records = self._build(gen_id, p)
            checkpoint("verify")
            verify_generation(self.store, gen_id, records, self.limits)
            self.store.seal(gen_id)
            rendered = len(p.render) + len(p.news)  # shards and news files
            self.manifest.generations.record(gen_id, records.values(), rendered=rendered, copied=len(p.copy))
            record_expiries(self.manifest, gen_id, self._news_expiries)
            checkpoint("policy")
            self.store.make_public(gen_id)
            checkpoint("switch")
            self.router.switch(gen_id, expected=p.live)
            checkpoint("switched")
            self.manifest.generations.set_state(gen_id, "live")
            urls = sum(f.url_count for f in records.values() if f.shard_no is not None)
            result = PublishResult(
                gen_id,
                p.live,
                rendered=rendered,
                copied=len(p.copy),
                files=len(records),
                urls=urls,
                seconds=time.monotonic() - started,
            )
            result.message = (
                f"published generation {gen_id}: {result.rendered} shards rendered, "
                f"{result.copied} copied, {urls} URLs in {result.seconds:.2f}s"
            )
        if self.on_switch is not None:
            try:
                self.on_switch(gen_id, p.live)
            except Exception:
                log.exception("after-publish hook failed; generation %s is live all the same", gen_id)
        return result

    def _build(self, gen_id: str, p: Plan) -> dict[str, FileRecord]:
        records: dict[str, FileRecord] = {}
        put_count = itertools.count(1)  # shards put so far (from several threads: next() holds the GIL)

        def put_shard(r: RenderedShard | None) -> FileRecord | None:
            if r is None:
                return None
            name = naming.shard_name(r.section, r.shard_no)
            md5 = self.store.put(gen_id, name, r.data)
            if self.on_progress is not None:
                self.on_progress(next(put_count), len(p.render))
            return FileRecord(
                name, len(r.data), md5, r.url_count, r.lastmod, r.lastmod_ts, r.section, r.shard_no, r.revision
            )

        assert p.live is not None or not p.copy
        live = p.live or ""
        checkpoint("render")
        # Unchanged files are copied in the background while the dirty shards render: neither waits for the other.
        with ThreadPoolExecutor(1) as background:
            copying = background.submit(self.store.map, lambda f: self.store.copy(live, gen_id, f.name), p.copy)
            for rec in self._render_and_put(p.render, put_shard):
                if rec is not None:
                    records[rec.name] = rec
            records.update(self._render_news(gen_id, p))
            checkpoint("copy")
            copying.result()
        for f in p.copy:
            records[f.name] = f
        for name, data in self.extra_files.items():
            records[name] = FileRecord(name, len(data), self.store.put(gen_id, name, data))
        checkpoint("indexes")
        for name, data in self._indexes(records).items():
            check_index(name, data, self.limits)
            records[name] = FileRecord(name, len(data), self.store.put(gen_id, name, data))
        return records

    def _render_news(self, gen_id: str, p: Plan) -> dict[str, FileRecord]:
        """Render and put the news files due at `p.now`; keep every news file's expiry for `record_expiries`."""
        copied = live_expiries(self.manifest, p.live) if p.live else {}
        self._news_expiries = {f.name: copied[f.name] for f in p.copy if f.name in copied}
        limits = Limits(capacity(self.limits.max_urls), self.limits.max_bytes, self.limits.max_index_entries)
        out: dict[str, FileRecord] = {}
        for shard in p.news:
            r = render_news(self.manifest, shard, p.now)
            if r is None:
                continue
            check = ShardCheck(shard.name, limits)
            data = gzip_pieces(check.passing([r.data]))
            check.close(r.url_count)
            out[shard.name] = FileRecord(
                shard.name,
                len(data),
                self.store.put(gen_id, shard.name, data),
                r.url_count,
                r.lastmod,
                r.lastmod_ts,
                shard.section,
                None,
                r.revision,
            )
            self._news_expiries[shard.name] = r.expires_at
        return out

    def _render_and_put(
        self, todo: list[Shard], put: Callable[[RenderedShard | None], FileRecord | None]
    ) -> list[FileRecord | None]:
        args = [(s.section, s.shard_no, self.limits) for s in todo]
        url = self.manifest.worker_url  # None: an in-memory manifest, which only this process sees
        if len(todo) < POOL_THRESHOLD or self.workers <= 1 or url is None:
            return [put(render_shard(self.manifest, *a)) for a in args]
        with worker_pool(self.workers, url) as pool:
            rendered = pool.map(_render_in_worker, args, chunksize=1)
            # Uploads overlap the rendering of the next shards; network stores upload in parallel too.
            return self.store.map(put, rendered)

    def _indexes(self, records: dict[str, FileRecord]) -> dict[str, bytes]:
        """Section indexes and the root index, each split where it would pass the index entry limit."""
        by_section: dict[str, list[FileRecord]] = {}
        for f in sorted(
            (f for f in records.values() if f.section is not None),  # shards, then news files
            key=lambda f: (f.section or "", f.shard_no is None, f.shard_no or 0, f.name),
        ):
            by_section.setdefault(f.section or "", []).append(f)
        out: dict[str, bytes] = {}
        everything: list[IndexEntry] = []
        for section, files in by_section.items():
            entries = [IndexEntry(self.base_url + f.name, f.lastmod) for f in files]
            everything += entries
            out.update(self._chunked(naming.section_index_names, section, entries))
        out.update(self._chunked(lambda _s, n: naming.root_index_names(n), "", everything))
        return out

    def _chunked(
        self, names: Callable[[str, int], list[str]], section: str, entries: list[IndexEntry]
    ) -> dict[str, bytes]:
        """Split where an index would pass the entry limit or the byte limit (which `check_index` holds it to)."""
        size = self.limits.max_index_entries
        budget = self.limits.max_bytes - len(index_xml([]))
        chunks: list[list[IndexEntry]] = [[]]
        used = 0
        for entry in entries:
            cost = index_entry_size(entry)
            if chunks[-1] and (len(chunks[-1]) >= size or used + cost > budget):
                chunks.append([])
                used = 0
            chunks[-1].append(entry)
            used += cost
        return {name: index_xml(chunk) for name, chunk in zip(names(section, len(chunks)), chunks, strict=True)}
