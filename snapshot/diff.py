"""Generation diffs: the URLs a generation added, removed, or gave a new lastmod, per section.

Identical shard files (same name, same MD5) hold identical URLs, so only shards whose MD5 differs, or that
exist on one side only, are read back from the store. A loc can move between shards (its document's URL
changed, or an overflow move), so locs are compared by (section, loc) across all of those shards. A loc cannot
have moved into a shard that is identical on both sides: that shard would have gained it, so it would differ.

Shards present on both sides are compared pairwise in memory, in worker processes when there are several (the
main process reads the files and keeps the results in order). In two files this service wrote, a line both
hold is a <url> both hold with the same loc and lastmod (a loc is on the line its <url> starts, and a generation
holds each loc once: snapshot/owners.py), so only the lines one side lacks are parsed: most locs stay put, even
when every shard changed. What is left over (moves, additions, removals) goes to a temporary SQLite file and is
joined at the end, so even a rebuild that reshuffles 4M URLs needs little memory.

Only per-section counts are recorded (`generation_diffs`, written when a generation goes live). Per-URL
changes are recomputed on demand from the store, which already holds them compressed: storing them again
would add up to millions of rows per publish to the manifest. `diff A B` works for any two generations whose
files are still in the store; once one is pruned only its recorded counts remain (DiffUnavailable says so).
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from isal import isal_zlib

from sitemap_keeper.snapshot.bounded import bounded_map
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import DiffRow, FileRecord
from sitemap_keeper.snapshot.render import ESCAPES, URLSET_OPEN
from sitemap_keeper.snapshot.stores.base import Store
from sitemap_keeper.snapshot.workers import worker_pool

KINDS = ("added", "removed", "changed")
READABLE = ("ready", "live", "retired")  # states whose files are still in the store
_SM = "http://www.sitemaps.org/schemas/sitemap/0.9 "  # expat's namespace-qualified names: "<uri> <local>"
_URL, _LOC, _LASTMOD = _SM + "url", _SM + "loc", _SM + "lastmod"
_BLOCK_BYTES = 1 << 20  # decompressed bytes per block a shard is read back in
# Below this many differing shards, comparing them in this process beats starting worker processes.
POOL_THRESHOLD = 4


class DiffUnavailable(RuntimeError):
    """The URLs of a generation cannot be read back: it is unknown, was pruned, or never finished."""


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # one of KINDS
    section: str
    loc: str
    old_lastmod: str | None
    new_lastmod: str | None


@dataclass(slots=True)
class DiffCounts:
    added: int = 0
    removed: int = 0
    changed: int = 0

    def add(self, kind: str, n: int = 1) -> None:
        setattr(self, kind, getattr(self, kind) + n)

    @property
    def total(self) -> int:
        return self.added + self.removed + self.changed


def shard_urls(data: bytes) -> Iterator[tuple[str, str | None]]:
    """(loc, lastmod) of every <url> of a gzip-compressed shard.

    A shard this service wrote (its own header, a <url> per line) is read with one regex per block, faster than
    expat's callbacks; anything else, or any line the regex does not account for, goes through expat.
    """
    found = _own_shard_urls(data)
    return iter(found) if found is not None else _parsed_shard_urls(data)


_OWN_HEADER = URLSET_OPEN.encode()
# Within one line: snapshot.render never splits a loc or lastmod across lines (the line walk relies on it).
_OWN_URL = re.compile(rb"<url><loc>([^<\n]*)</loc>(?:<lastmod>([^<\n]*)</lastmod>)?")
_ENTITIES = {entity.encode(): char.encode() for char, entity in ESCAPES.items()}  # what render.escape writes
_ENTITY = re.compile(b"|".join(re.escape(entity) for entity in _ENTITIES))


def _own_shard_urls(data: bytes) -> list[tuple[str, str | None]] | None:
    """shard_urls for the files snapshot.render writes; None for any other file."""
    found: list[tuple[str, str | None]] = []
    rest = b""
    checked = False
    for chunk in _inflated(data):
        text = rest + chunk
        if not checked:
            if len(text) < len(_OWN_HEADER):
                rest = text
                continue
            if not text.startswith(_OWN_HEADER):
                return None
            checked = True
        cut = text.rfind(b"\n") + 1
        if not _scan_own(text[:cut], found):
            return None
        rest = text[cut:]
    return found if checked and _scan_own(rest, found) else None


def _scan_own(block: bytes, found: list[tuple[str, str | None]]) -> bool:
    """Add the URLs of a block of whole lines; False if the regex does not account for every one."""
    urls = _OWN_URL.findall(block)
    if len(urls) != block.count(b"<url>"):
        return False
    for loc, lastmod in urls:
        if b"&" in loc:
            if loc.count(b"&") != len(_ENTITY.findall(loc)):
                return False  # a reference escape() never writes: let expat resolve it
            loc = _ENTITY.sub(lambda m: _ENTITIES[m.group()], loc)
        found.append((loc.decode(), lastmod.decode() if lastmod else None))
    return True


def _parsed_shard_urls(data: bytes) -> Iterator[tuple[str, str | None]]:
    """shard_urls for any sitemap: parsed by expat while it is decompressed."""
    found: list[tuple[str, str | None]] = []
    text: list[str] = []
    current: dict[str, str] = {}

    def end(name: str) -> None:
        # No start handler (it would double the callbacks): text is cleared at every end, and what came
        # before an element's start is white space between elements, which strip() drops (a loc has none).
        if name == _URL:
            if _LOC in current:
                found.append((current[_LOC], current.get(_LASTMOD)))
            current.clear()
        elif name in (_LOC, _LASTMOD):  # image:loc is in another namespace
            current[name] = "".join(text).strip()
        text.clear()

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    for block in _inflated(data):
        parser.Parse(block, False)
        yield from found
        found.clear()
    parser.Parse(b"", True)
    yield from found


def _inflated(data: bytes) -> Iterator[bytes]:
    """A gzip file's content in blocks of at most _BLOCK_BYTES bytes, however well it compressed: a shard of
    50 MiB compresses to well under 1 MiB, and decompressed whole it took the diff to 270 MiB."""
    inflate = zlib.decompressobj(wbits=31)
    pending = data
    while pending:
        yield inflate.decompress(pending, _BLOCK_BYTES)
        pending = inflate.unconsumed_tail
    yield inflate.flush()


@dataclass(frozen=True, slots=True)
class ShardPair:
    """Both versions of one shard file, gzip-compressed (None: that side has no such file)."""

    section: str
    old: bytes | None
    new: bytes | None


@dataclass(frozen=True, slots=True)
class ShardDiff:
    """What one shard pair holds differently: the locs both sides hold with another lastmod (sorted by loc),
    and the URLs each side holds that the other does not (moved to another shard, added or removed)."""

    changed: list[Change]
    old_only: list[tuple[str, str | None]]
    new_only: list[tuple[str, str | None]]


def compare_shard(pair: ShardPair) -> ShardDiff:
    """The URLs of a shard pair compared by loc: only the lines one side lacks when both are this service's
    files (`_urls_apart`), every URL of both sides otherwise."""
    apart = _urls_apart(pair.old, pair.new) if pair.old is not None and pair.new is not None else None
    if apart is None:
        old = dict(shard_urls(pair.old)) if pair.old is not None else {}
        new = dict(shard_urls(pair.new)) if pair.new is not None else {}
    else:
        old, new = apart
    changed = [
        Change("changed", pair.section, loc, old[loc], new[loc])
        for loc in sorted(new.keys() & old.keys())
        if old[loc] != new[loc]
    ]
    return ShardDiff(
        changed,
        [(loc, old[loc]) for loc in old.keys() - new.keys()],
        [(loc, new[loc]) for loc in new.keys() - old.keys()],
    )


def _urls_apart(old: bytes, new: bytes) -> tuple[dict[str, str | None], dict[str, str | None]] | None:
    """(loc -> lastmod) of the URLs on the lines each of two files this service wrote holds and the other does
    not; None if either is another writer's file, or a line one side lacks is not one <url> per line as
    snapshot.render writes it (the whole files are compared then)."""
    lines = _lines_apart(old, new)
    if lines is None:
        return None
    sides = []
    for side in lines:
        block = b"\n".join(side)
        found: list[tuple[str, str | None]] = []
        if b"<!" in block or not _scan_own(block, found):
            return None
        with_lastmod = sum(1 for _loc, lastmod in found if lastmod is not None)
        if (
            not block.count(b"<loc>") == block.count(b"</loc>") == len(found)
            or block.count(b"<lastmod>") != with_lastmod
        ):
            return None  # a loc or lastmod on a line of its own: not this service's layout
        urls = dict(found)
        if len(urls) != len(found):
            return None  # a loc twice on one side: a line both hold may not say what that side holds for it
        sides.append(urls)
    return sides[0], sides[1]


def _lines_apart(old: bytes, new: bytes) -> tuple[set[bytes], set[bytes]] | None:
    """The lines of `old` that `new` lacks and those of `new` that `old` lacks (None if either is another
    writer's file, or if most of both differ: `shard_urls` then holds less than these lines would).

    Both hold their URLs in the same order (by key), so they are walked side by side: a stretch they hold
    alike is passed over without being split into lines, and where they part, a line of `old` just after is
    looked for in `new` to go on from (a changed, added or removed <url>). Only the lines of the stretches in
    between are compared, as sets: the walk needs no luck to be right, only to be fast; a line put aside on
    one side and held by the other elsewhere cancels out. Each file is inflated as the walk goes, and
    what it has passed is forgotten: a window of a few megabytes of each, whatever the shard's size.
    """
    a, b = _Content(old), _Content(new)
    if a.slice(0, len(_OWN_HEADER)) != _OWN_HEADER or b.slice(0, len(_OWN_HEADER)) != _OWN_HEADER:
        return None
    most = (_size(old) + _size(new)) * APART_SHARE
    old_lines: list[bytes] = []
    new_lines: list[bytes] = []
    apart = 0  # bytes of the stretches that differ, so far
    i = j = 0  # where both start a line, after a stretch they hold alike
    while True:
        alike = _common_length(a, i, b, j)
        i, j = i + alike, j + alike
        if a.reach(i + 1) == i and b.reach(j + 1) == j:
            break
        # The line they part in starts after a line break still held (see forget).
        back = i - (a.base + a.text.rfind(b"\n", 0, i - a.base) + 1)
        i, j = i - back, j - back
        found = _rejoin(a, i, b, j)
        ai, bj = found or (max(_size(old), i), max(_size(new), j))  # the rest, its size from the trailer
        apart += ai - i + bj - j
        if apart > most:
            return None
        if found is None:
            ai, bj = a.reach(_ALL), b.reach(_ALL)
        old_lines += a.slice(i, ai).split(b"\n")
        new_lines += b.slice(j, bj).split(b"\n")
        if found is None:
            break
        i, j = found
        a.forget(i - 1)
        b.forget(j - 1)
    olds, news = set(old_lines), set(new_lines)
    return olds - news, news - olds


APART_SHARE = 0.25  # beyond this share of both files differing, they are compared whole (shard_urls)
REJOIN_LINES = 4  # lines of `old` looked for in `new` where they part, before the rest is compared as sets
REJOIN_REACH = 1 << 18  # how far into `new` each is looked for
_GALLOP = 256  # bytes compared first; doubled while equal
_ALL = 1 << 62


def _size(data: bytes) -> int:
    """A gzip file's content size, from its trailer (modulo 4 GiB: a shard is at most 50 MiB)."""
    return int.from_bytes(data[-4:], "little")


class _Content:
    """A gzip file's content, inflated as far as it is looked at, and forgotten before what `forget` says:
    `text` holds it from the offset `base` on. Offsets are the content's own."""

    def __init__(self, data: bytes) -> None:
        self._inflate = isal_zlib.decompressobj(wbits=31)  # about three times as fast as zlib's
        self._pending = data
        self.text = b""
        self.base = 0
        self._ended = False

    def reach(self, end: int) -> int:
        """Inflate up to `end`, or to the end of the content; where what is inflated ends."""
        while self.base + len(self.text) < end and not self._ended:
            if self._pending:
                block = self._inflate.decompress(self._pending, _BLOCK_BYTES)
                self._pending = self._inflate.unconsumed_tail
            else:
                block, self._ended = self._inflate.flush(), True
            self.text += block
        return self.base + len(self.text)

    def forget(self, before: int) -> None:
        """Let go of the content before `before` (once it is a block's worth: cutting copies what is kept)."""
        if before - self.base >= _BLOCK_BYTES:
            self.text, self.base = self.text[before - self.base :], before

    def line_end(self, at: int) -> int:
        """Where the line `at` is in ends, its line break included (the end of the content for the last)."""
        while True:
            found = self.text.find(b"\n", at - self.base)
            if found >= 0:
                return self.base + found + 1
            top = self.base + len(self.text)
            if self.reach(top + _BLOCK_BYTES) == top:
                return top

    def slice(self, start: int, end: int) -> bytes:
        self.reach(end)
        return self.text[start - self.base : end - self.base]


def _rejoin(a: _Content, i: int, b: _Content, j: int) -> tuple[int, int] | None:
    """Where a and b, which part in the lines starting at i and j, hold the same line again: the first of the
    few lines after a's line at i found in b after j (a line changed, removed, or added to b before it)."""
    at = a.line_end(i)
    for _ in range(REJOIN_LINES):
        end = a.line_end(at)
        if end == at:
            return None
        line = a.slice(at - 1, end)  # with the line break before it: a whole line of b
        b.reach(j + REJOIN_REACH)
        found = b.text.find(line, j - 1 - b.base, j + REJOIN_REACH - b.base)
        if found >= 0:
            return at, b.base + found + 1
        at = end
    return None


def _common_length(a: _Content, i: int, b: _Content, j: int) -> int:
    """How many bytes a and b have alike from i and j on: compared in doubling windows, then bisected
    (startswith compares in place: no window is copied). What both hold alike is forgotten as it goes."""
    n, step = 0, _GALLOP
    while True:
        k = min(step, a.reach(i + n + step) - i - n, b.reach(j + n + step) - j - n)
        if k <= 0:
            return n
        view = memoryview(b.text)
        if not a.text.startswith(view[j + n - b.base : j + n + k - b.base], i + n - a.base):
            break
        n += k
        step = min(2 * step, _BLOCK_BYTES)
        if i + n - a.base >= 2 * _BLOCK_BYTES:  # up to the last line break, keeping it (_rejoin looks for it)
            cut = a.base + a.text.rfind(b"\n", 0, i + n - a.base)
            if cut >= i:
                del view
                a.forget(cut)
                b.forget(j + cut - i)
    lo, hi = n, n + k - 1  # alike up to lo; they differ before hi + 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.text.startswith(view[j + lo - b.base : j + mid - b.base], i + lo - a.base):
            lo = mid
        else:
            hi = mid - 1
    return lo


def tally(changes: Iterable[Change], counts: dict[str, DiffCounts]) -> Iterator[Change]:
    """Pass changes through, counting them per section."""
    for c in changes:
        counts.setdefault(c.section, DiffCounts()).add(c.kind)
        yield c


@dataclass
class Comparison:
    """Two generations about to be compared; both are known to be readable."""

    store: Store
    old_id: str | None  # None: compared with nothing, every URL is added
    new_id: str
    old_files: dict[str, FileRecord]
    new_files: dict[str, FileRecord]
    workers: int = 1  # processes comparing shard pairs (more than one: a pool of them)
    differing: list[str] = field(init=False)

    def __post_init__(self) -> None:
        old, new = (
            {(n, f.md5) for n, f in files.items() if f.shard_no is not None}
            for files in (self.old_files, self.new_files)
        )
        self.differing = sorted(
            {name for name, _md5 in old ^ new},  # on one side only, or another MD5
            key=lambda n: (self._record(n).section or "", self._record(n).shard_no or 0),
        )

    def _record(self, name: str) -> FileRecord:
        return self.new_files.get(name) or self.old_files[name]

    def zero_counts(self) -> dict[str, DiffCounts]:
        """Every section of either generation, with nothing counted yet."""
        files = [*self.old_files.values(), *self.new_files.values()]
        return {s: DiffCounts() for s in sorted({f.section for f in files if f.section is not None})}

    def summary(self) -> dict[str, DiffCounts]:
        counts = self.zero_counts()
        if self.old_id is None:  # everything is added: the recorded URL counts say how much, no reading
            for f in self.new_files.values():
                if f.section is not None:
                    counts[f.section].added += f.url_count
            return counts
        for _ in tally(self.changes(), counts):
            pass
        return counts

    def changes(self) -> Iterator[Change]:
        """Every change: shard by shard, then the locs that moved between shards, appeared or went."""
        with _Loose() as loose:
            for name, shard in zip(self.differing, self._shard_diffs(), strict=True):
                section = self._record(name).section or ""
                yield from shard.changed
                loose.add("old", section, shard.old_only)
                loose.add("new", section, shard.new_only)
            yield from loose.resolve()

    def _shard_diffs(self) -> Iterator[ShardDiff]:
        """compare_shard of every differing shard, in order: the files are read here, as the workers need them."""
        pairs = (
            ShardPair(
                self._record(name).section or "",
                self._read(self.old_id, name, self.old_files),
                self._read(self.new_id, name, self.new_files),
            )
            for name in self.differing
        )
        if self.workers <= 1 or len(self.differing) < POOL_THRESHOLD:
            yield from map(compare_shard, pairs)
            return
        with worker_pool(self.workers) as pool:
            yield from bounded_map(pool, compare_shard, pairs, 2 * self.workers)  # enough to keep all busy

    def _read(self, gen_id: str | None, name: str, files: dict[str, FileRecord]) -> bytes | None:
        if gen_id is None or name not in files:
            return None
        try:
            return self.store.get(gen_id, name)
        except FileNotFoundError:
            raise DiffUnavailable(f"{gen_id}/{name} is gone from the store (pruned?)") from None


class _Loose:
    """Locs seen on one side of a shard pair only, in a temporary SQLite file (memory until it is big)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a private temporary file, deleted on close
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
            "CREATE TABLE old (section TEXT, loc TEXT, lastmod TEXT); "
            "CREATE TABLE new (section TEXT, loc TEXT, lastmod TEXT);"
        )

    def __enter__(self) -> _Loose:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.db.close()

    def add(self, side: str, section: str, rows: Iterable[tuple[str, str | None]]) -> None:
        self.db.executemany(f"INSERT INTO {side} VALUES (?, ?, ?)", ((section, *r) for r in rows))

    def resolve(self) -> Iterator[Change]:
        # Indexes built after loading: one sort, much faster than keeping them up to date row by row.
        self.db.executescript("CREATE INDEX old_loc ON old (section, loc); CREATE INDEX new_loc ON new (section, loc);")
        match = "o.section = n.section AND o.loc = n.loc"
        query = (
            "SELECT 'added', section, loc, NULL, lastmod FROM new n WHERE NOT EXISTS "
            f"(SELECT 1 FROM old o WHERE {match}) "
            "UNION ALL SELECT 'removed', section, loc, lastmod, NULL FROM old o WHERE NOT EXISTS "
            f"(SELECT 1 FROM new n WHERE {match}) "
            "UNION ALL SELECT 'changed', n.section, n.loc, o.lastmod, n.lastmod "
            f"FROM new n JOIN old o ON {match} WHERE o.lastmod IS NOT n.lastmod ORDER BY 2, 3"
        )
        for row in self.db.execute(query):
            yield Change(*row)


def _readable_files(manifest: Manifest, gen_id: str) -> dict[str, FileRecord]:
    gen = manifest.generations.get(gen_id)
    if gen is None:
        raise DiffUnavailable(f"generation {gen_id} is not recorded in this manifest")
    if gen.state == "pruned":
        raise DiffUnavailable(
            f"generation {gen_id} is pruned: its files are gone from the store; what each "
            "generation changed against its base is still recorded (diff --summary)"
        )
    if gen.state not in READABLE:
        raise DiffUnavailable(f"generation {gen_id} is {gen.state}, not a published generation")
    return manifest.generations.files(gen_id)


def compare(manifest: Manifest, store: Store, old_id: str | None, new_id: str, workers: int = 1) -> Comparison:
    """Ready to compare `old_id` (None: nothing) with `new_id` in `workers` processes; DiffUnavailable if
    either is unreadable."""
    old_files = _readable_files(manifest, old_id) if old_id is not None else {}
    return Comparison(store, old_id, new_id, old_files, _readable_files(manifest, new_id), workers)


# -- recorded counts ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    generation_id: str
    base_id: str | None
    sections: dict[str, DiffCounts]


def record(manifest: Manifest, gen_id: str, base_id: str | None, counts: dict[str, DiffCounts]) -> None:
    manifest.diffs.record(gen_id, [DiffRow(s, base_id, c.added, c.removed, c.changed) for s, c in counts.items()])


def recorded(manifest: Manifest, gen_id: str) -> Recorded | None:
    """The counts recorded when `gen_id` went live, against the generation it was published on."""
    rows = manifest.diffs.recorded(gen_id)
    if not rows:
        return None
    return Recorded(gen_id, rows[0].base_id, {r.section: DiffCounts(r.added, r.removed, r.changed) for r in rows})


def total(counts: dict[str, DiffCounts]) -> DiffCounts:
    return DiffCounts(*(sum(getattr(c, k) for c in counts.values()) for k in KINDS))


def as_json(counts: dict[str, DiffCounts]) -> dict[str, Any]:
    """Per-section counts and their totals, ready for JSON."""
    sections = {s: dataclasses.asdict(c) for s, c in counts.items()}
    return {**dataclasses.asdict(total(counts)), "sections": sections}
