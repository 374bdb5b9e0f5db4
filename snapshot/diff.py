"""Generation diffs: the URLs a generation added, removed, or gave a new lastmod, per section.

Identical shard files (same name, same MD5) hold identical URLs, so only shards whose MD5 differs, or that
exist on one side only, are read back from the store. A loc can move between shards (its document's URL
changed, or an overflow move), so locs are compared by (section, loc) across all of those shards. A loc cannot
have moved into a shard that is identical on both sides: that shard would have gained it, so it would differ.

Shards present on both sides are compared pairwise in memory (most locs stay put, even when every lastmod
changes); what is left over (moves, additions, removals) goes to a temporary SQLite file and is joined at the
end, so even a rebuild that reshuffles 4M URLs needs little memory.

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

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import DiffRow, FileRecord
from sitemap_keeper.snapshot.render import ESCAPES, URLSET_OPEN
from sitemap_keeper.snapshot.stores.base import Store

KINDS = ("added", "removed", "changed")
READABLE = ("ready", "live", "retired")  # states whose files are still in the store
_SM = "http://www.sitemaps.org/schemas/sitemap/0.9 "  # expat's namespace-qualified names: "<uri> <local>"
_URL, _LOC, _LASTMOD = _SM + "url", _SM + "loc", _SM + "lastmod"
_CHUNK = 1 << 20


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

    A shard this service wrote (its own header, a <url> per line) is read with one regex per block, about three
    times faster than expat's callbacks; anything else, or any line the regex does not account for, goes
    through expat.
    """
    found = _own_shard_urls(data)
    return iter(found) if found is not None else _parsed_shard_urls(data)


_OWN_HEADER = URLSET_OPEN.encode()
_OWN_URL = re.compile(rb"<url><loc>([^<]*)</loc>(?:<lastmod>([^<]*)</lastmod>)?")
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
    """A gzip file's content in blocks of at most _CHUNK bytes, however well it compressed: a shard of
    50 MiB compresses to well under 1 MiB, and decompressed whole it took the diff to 270 MiB."""
    inflate = zlib.decompressobj(wbits=31)
    pending = data
    while pending:
        yield inflate.decompress(pending, _CHUNK)
        pending = inflate.unconsumed_tail
    yield inflate.flush()


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
    differing: list[str] = field(init=False)

    def __post_init__(self) -> None:
        old, new = ({(n, f.md5) for n, f in files.items() if f.shard_no is not None}
                    for files in (self.old_files, self.new_files))
        self.differing = sorted({name for name, _md5 in old ^ new},  # on one side only, or another MD5
                                key=lambda n: (self._record(n).section or "", self._record(n).shard_no or 0))

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
            for name in self.differing:
                section = self._record(name).section or ""
                old = dict(self._read(self.old_id, name, self.old_files))
                new = dict(self._read(self.new_id, name, self.new_files))
                for loc in sorted(new.keys() & old.keys()):
                    if old[loc] != new[loc]:
                        yield Change("changed", section, loc, old[loc], new[loc])
                loose.add("old", section, ((loc, old[loc]) for loc in old.keys() - new.keys()))
                loose.add("new", section, ((loc, new[loc]) for loc in new.keys() - old.keys()))
            yield from loose.resolve()

    def _read(self, gen_id: str | None, name: str, files: dict[str, FileRecord]
              ) -> Iterator[tuple[str, str | None]]:
        if gen_id is None or name not in files:
            return iter(())
        try:
            data = self.store.get(gen_id, name)
        except FileNotFoundError:
            raise DiffUnavailable(f"{gen_id}/{name} is gone from the store (pruned?)") from None
        return shard_urls(data)


class _Loose:
    """Locs seen on one side of a shard pair only, in a temporary SQLite file (memory until it is big)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")  # "": a private temporary file, deleted on close
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              "CREATE TABLE old (section TEXT, loc TEXT, lastmod TEXT); "
                              "CREATE TABLE new (section TEXT, loc TEXT, lastmod TEXT);")

    def __enter__(self) -> _Loose:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.db.close()

    def add(self, side: str, section: str, rows: Iterable[tuple[str, str | None]]) -> None:
        self.db.executemany(f"INSERT INTO {side} VALUES (?, ?, ?)", ((section, *r) for r in rows))

    def resolve(self) -> Iterator[Change]:
        # Indexes built after loading: one sort, much faster than keeping them up to date row by row.
        self.db.executescript("CREATE INDEX old_loc ON old (section, loc); "
                              "CREATE INDEX new_loc ON new (section, loc);")
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
    gen = manifest.generation(gen_id)
    if gen is None:
        raise DiffUnavailable(f"generation {gen_id} is not recorded in this manifest")
    if gen.state == "pruned":
        raise DiffUnavailable(f"generation {gen_id} is pruned: its files are gone from the store; what each "
                              "generation changed against its base is still recorded (diff --summary)")
    if gen.state not in READABLE:
        raise DiffUnavailable(f"generation {gen_id} is {gen.state}, not a published generation")
    return manifest.files(gen_id)


def compare(manifest: Manifest, store: Store, old_id: str | None, new_id: str) -> Comparison:
    """Ready to compare `old_id` (None: nothing) with `new_id`; DiffUnavailable if either is unreadable."""
    old_files = _readable_files(manifest, old_id) if old_id is not None else {}
    return Comparison(store, old_id, new_id, old_files, _readable_files(manifest, new_id))


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
