"""What SQLite alone takes to keep a document's state per event over a large catalog, layout by layout: the
floors under `bench/bench_apply.py --catalog N` on SQLite, and what a layout other than a row rewritten per
event could save.

    python bench/bench_layouts.py --manifest /work/tmp/apply/sqlite-4000000/manifest.db   # every layout
    python bench/bench_layouts.py --manifest M.db --layout rewrite delta --merge 200000

--manifest is an SQLite manifest, such as the one `bench/bench_apply.py --catalog N --cache DIR` builds at
DIR/sqlite-N/manifest.db; it is only read. Each layout runs on a fresh copy of it, with the service's writer
settings (page cache, WAL, checkpoints), over the documents of bench_apply's own synthetic events for a
catalog of the manifest's size (85% updates, 5% deletions, 10% new documents), in one write transaction per
batch. Nothing is placed, and only an event whose document the manifest holds writes anything (a deletion
rewrites its row as it is): these are floors, not the service's work. The events are rendered beforehand,
untimed, for their content.

  read     the batch's stored rows read as apply reads them (document_rows.load_all); nothing written
  rewrite  read, then each stored row rewritten in place by rowid, its size unchanged (bench_apply's floor)
  grow     read, then each stored row rewritten with its event's loc, lastmod and XML (as the service renders
           them: about 270 bytes a document here), as an event gives a rebuilt row its content
  append   read, then each stored document's loc, lastmod and XML appended to a table of its own
  delta    read (a small change table, then the rows), then each stored document's state upserted into the
           change table (keyed by section and key, with the rowid its read found) and its content appended;
           every --merge events, the change table is written into the documents rows in one pass in rowid
           order and emptied (the last merge is timed too)
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import made_dir, write_events
from sitemap_keeper.incremental.events import DELETE_FIELDS, KEY, LOC, SECTION, parse_events
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.manifest import document_rows
from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY, connect
from sitemap_keeper.snapshot.manifest.document_rows import ROWID, Ident, Stored

Content = tuple[str | None, str | None, str | None]  # what an event stores in its document's row: loc, lastmod, xml
_CONTENT_TABLE = (
    "CREATE TABLE bench_xml (id INTEGER PRIMARY KEY, section TEXT, key TEXT, loc TEXT, lastmod TEXT, xml TEXT)"
)
_CHANGES_TABLE = (
    "CREATE TABLE bench_changes (section TEXT, key TEXT, at INTEGER, version INTEGER, "
    "PRIMARY KEY (section, key)) WITHOUT ROWID"
)
_MERGE = (
    "UPDATE documents SET version = c.version FROM (SELECT at, version FROM bench_changes ORDER BY at) AS c "
    "WHERE documents.rowid = c.at"
)
STORED_VERSION = 2  # a Stored's version
NO_CONTENT: Content = (None, None, None)  # a deletion's (a rebuilt row holds none either)


def _stored(raw: Any, batch: Sequence[Ident]) -> list[tuple[Ident, Stored]]:
    """The batch's stored rows, in rowid order."""
    return sorted(document_rows.load_all(raw, "sqlite", batch).items(), key=lambda item: item[1][ROWID])


@dataclass(frozen=True, slots=True)
class Timing:
    seconds: float
    cpu: float  # of this process, which is all of SQLite's work here


class Layout:
    """A layout's work (`raw`: an sqlite3 connection): `setup` once, untimed; `batch` for each batch of
    events' documents in a write transaction of its own; `end`, what is left after the last batch, in one more."""

    setup: Sequence[str] = ()

    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        raise NotImplementedError

    def end(self, raw: Any) -> None:
        """Nothing is left, unless a layout says otherwise."""


class Read(Layout):
    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        document_rows.load_all(raw, "sqlite", idents)


class Rewrite(Layout):
    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        raw.executemany(
            "UPDATE documents SET version = version + 1 WHERE rowid = ?",
            [(at[ROWID],) for _ident, at in _stored(raw, idents)],
        )


class Grow(Layout):
    def __init__(self, contents: dict[Ident, Content]) -> None:
        self.contents = contents

    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        raw.executemany(
            "UPDATE documents SET version = version + 1, loc = ?, lastmod = ?, xml = ? WHERE rowid = ?",
            [(*self.contents.get(ident, NO_CONTENT), at[ROWID]) for ident, at in _stored(raw, idents)],
        )


class Append(Layout):
    setup: Sequence[str] = (_CONTENT_TABLE,)

    def __init__(self, contents: dict[Ident, Content]) -> None:
        self.contents = contents

    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        self.append(raw, document_rows.load_all(raw, "sqlite", idents))

    def append(self, raw: Any, found: dict[Ident, Stored]) -> None:
        raw.executemany(
            "INSERT INTO bench_xml (section, key, loc, lastmod, xml) VALUES (?, ?, ?, ?, ?)",
            [(*ident, *self.contents.get(ident, NO_CONTENT)) for ident in found],
        )


class Delta(Append):
    """The change table, merged into the documents rows every `merge` events and after the last batch."""

    setup = (_CONTENT_TABLE, _CHANGES_TABLE)

    def __init__(self, contents: dict[Ident, Content], merge: int) -> None:
        super().__init__(contents)
        self.merge = merge
        self.pending = 0

    def batch(self, raw: Any, idents: Sequence[Ident]) -> None:
        changed: dict[Ident, int] = {}
        by_section: dict[str, list[str]] = {}
        for section, key in sorted(set(idents)):
            by_section.setdefault(section, []).append(key)
        for section, keys in by_section.items():
            for i in range(0, len(keys), KEYS_PER_QUERY):
                chunk = keys[i : i + KEYS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, version FROM bench_changes WHERE section = ? AND key IN ({marks})"
                changed.update({(section, k): v for k, v in raw.execute(sql, (section, *chunk))})
        found = document_rows.load_all(raw, "sqlite", idents)
        raw.executemany(
            "INSERT INTO bench_changes VALUES (?, ?, ?, ?) "
            "ON CONFLICT (section, key) DO UPDATE SET version = excluded.version",
            [
                (s, k, at[ROWID], changed.get((s, k), at[STORED_VERSION] or 0) + 1)
                for (s, k), at in sorted(found.items())
            ],
        )
        self.append(raw, found)
        self.pending += len(idents)
        if self.pending >= self.merge:
            self.end(raw)

    def end(self, raw: Any) -> None:
        if self.pending:
            raw.execute(_MERGE)
            raw.execute("DELETE FROM bench_changes")
            self.pending = 0


def contents(events: Sequence[bytes], workdir: Path) -> dict[Ident, Content]:
    """What each upsert event stores in its document's row, rendered as the service renders it."""
    settings = ServiceSettings(data_dir=workdir, allowed_hosts=(synthetic.HOST,))
    parsed = parse_events(settings.limits.fitted(settings.rules), events)
    if parsed.rejects:
        raise SystemExit(f"error: the service refused a synthetic event: {parsed.rejects[0][1]}")
    return {
        (op[SECTION], op[KEY]): (op[LOC], op[LOC + 1], op[LOC + 4])  # loc, lastmod, xml
        for op in parsed.ops
        if len(op) > DELETE_FIELDS
    }


def copy_manifest(source: Path, to: Path) -> None:
    """A consistent copy of an SQLite manifest (its WAL included), through SQLite's backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def timed(path: Path, idents: Sequence[Ident], batch_size: int, layout: Layout) -> Timing:
    """The layout over the manifest at `path`, a write transaction per batch of `idents`, with the writer's
    settings."""
    engine = connect(f"sqlite:///{path}", writer=True)
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            for sql in layout.setup:
                raw.execute(sql)
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(idents), batch_size):
                raw.execute("BEGIN IMMEDIATE")
                layout.batch(raw, idents[i : i + batch_size])
                raw.execute("COMMIT")
            raw.execute("BEGIN IMMEDIATE")
            layout.end(raw)
            raw.execute("COMMIT")
            return Timing(time.perf_counter() - started, time.process_time() - cpu)
    finally:
        engine.dispose()


def event_idents(events: Sequence[bytes]) -> list[Ident]:
    """(section, key) of each event, in order."""
    return [(obj["section"], obj["key"]) for obj in map(orjson.loads, events)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True, help="an SQLite manifest (only read)")
    ap.add_argument("--layout", nargs="+", choices=["read", "rewrite", "grow", "append", "delta"])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--merge", type=int, default=100_000, help="events between the delta layout's merges")
    ap.add_argument("--workdir", type=made_dir, help="where the copies go (default: the manifest's folder)")
    args = ap.parse_args()
    if not args.manifest.is_file():
        raise SystemExit(f"error: no manifest at {args.manifest}")
    probe = sqlite3.connect(f"file:{args.manifest}?mode=ro", uri=True)
    try:
        catalog = probe.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.DatabaseError as e:  # not SQLite, or no documents table
        raise SystemExit(f"error: {args.manifest} is not a manifest: {e}") from None
    finally:
        probe.close()
    layouts: dict[str, Callable[[dict[Ident, Content]], Layout]] = {
        "read": lambda _contents: Read(),
        "rewrite": lambda _contents: Rewrite(),
        "grow": Grow,
        "append": Append,
        "delta": lambda contents: Delta(contents, args.merge),
    }
    with tempfile.TemporaryDirectory(prefix="bench-layouts-", dir=args.workdir or args.manifest.parent) as tmp:
        events = Path(tmp) / "events.jsonl"
        write_events(events, args.events, catalog)
        raws = events.read_bytes().splitlines()
        idents, rendered = event_idents(raws), contents(raws, Path(tmp))
        for name in args.layout or list(layouts):
            copy = Path(tmp) / "manifest.db"
            copy_manifest(args.manifest, copy)
            t = timed(copy, idents, args.batch_size, layouts[name](rendered))
            for leftover in Path(tmp).glob("manifest.db*"):
                leftover.unlink()
            print(
                f"{name:<8} {len(idents):,} events in {t.seconds:6.2f}s = {len(idents) / t.seconds:>9,.0f}/s  "
                f"(catalog {catalog:,}, batches of {args.batch_size:,}; CPU {t.cpu:.1f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
