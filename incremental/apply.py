"""Apply events to the manifest: one transaction per batch, each touched shard's revision bumped once.

A document keeps its shard for life; a new one fills its section's open shard. The one exception: an update
that would push its shard over the byte limit moves that document to the open shard (dirtying both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, tuple_

from incremental.events import Delete, Event, Upsert, parse_event
from snapshot.document import InvalidDocument, Rules
from snapshot.limits import Limits
from snapshot.manifest import Counts, Manifest, documents, sections, shards
from snapshot.render import url_fragment

CHUNK = 400  # keys per IN (...) query: well below every database's parameter limit


@dataclass(slots=True)
class _Doc:
    shard_no: int | None
    version: int | None
    size: int
    live: bool


@dataclass(slots=True)
class _Shard:
    url_count: int
    byte_count: int
    touched: bool = False


class Applier:
    def __init__(self, manifest: Manifest, rules: Rules, limits: Limits) -> None:
        self.manifest = manifest
        self.rules = rules
        self.limits = limits

    def apply_raw(
        self,
        items: Iterable[tuple[str, bytes]],
        extra: Callable[[Connection], None] | None = None,
    ) -> Counts:
        """Validate and apply raw events, (source, bytes) each, in one transaction.

        Invalid ones go to the dead-letter table in the same transaction; `extra` runs in it too (the Kafka
        consumer stores its offsets there, which is what makes the effect exactly-once).
        """
        events: list[Event] = []
        letters: list[tuple[str, str, bytes]] = []
        for source, raw in items:
            try:
                events.append(parse_event(raw, self.rules))
            except InvalidDocument as exc:
                letters.append((source, str(exc), raw))
        with self.manifest.write() as conn:
            counts = self._apply(conn, events)
            Manifest.add_dead_letters(conn, letters)
            if extra is not None:
                extra(conn)
        counts.rejected += len(letters)
        return counts

    def _apply(self, conn: Connection, events: Sequence[Event]) -> Counts:
        counts = Counts()
        if not events:
            return counts
        docs = self._load_docs(conn, {(e.section, e.key) for e in events})
        open_shards = self._load_open_shards(conn, {e.section for e in events})
        wanted = {(s, d.shard_no) for (s, _k), d in docs.items() if d.shard_no is not None}
        wanted |= {(s, n) for s, n in open_shards.items()}
        shard_state = self._load_shards(conn, wanted)
        rows: dict[tuple[str, str], tuple[object, ...]] = {}

        def shard(section: str, shard_no: int) -> _Shard:
            return shard_state.setdefault((section, shard_no), _Shard(0, 0))

        def place(section: str, size: int, preferred: int | None) -> int:
            if preferred is not None and self.limits.fits(shard(section, preferred).url_count,
                                                         shard(section, preferred).byte_count, size):
                return preferred
            n = open_shards.setdefault(section, 1)
            st = shard(section, n)
            if not self.limits.fits(st.url_count, st.byte_count, size):
                n += 1
                open_shards[section] = n
            return n

        for ev in events:
            ident = (ev.section, ev.key)
            cur = docs.get(ident)
            if cur is not None and ev.version is not None and cur.version is not None and ev.version <= cur.version:
                counts.stale += 1
                continue
            version = ev.version if ev.version is not None else (cur.version if cur else None)
            counts.applied += 1
            if cur is not None and cur.live and cur.shard_no is not None:  # leave the old place
                old = shard(ev.section, cur.shard_no)
                old.url_count -= 1
                old.byte_count -= cur.size
                old.touched = True
            if isinstance(ev, Delete):
                shard_no = cur.shard_no if cur else None
                docs[ident] = _Doc(shard_no, version, 0, False)
                if cur is not None or version is not None:
                    rows[ident] = (ev.section, ev.key, shard_no, version, None, None, None, 0, None)
                continue
            assert isinstance(ev, Upsert)
            d = ev.document
            xml = url_fragment(d)
            size = len(xml.encode())
            shard_no = place(ev.section, size, cur.shard_no if cur else None)
            st = shard(ev.section, shard_no)
            st.url_count += 1
            st.byte_count += size
            st.touched = True
            docs[ident] = _Doc(shard_no, version, size, True)
            rows[ident] = (d.section, d.key, shard_no, version, d.loc, d.lastmod, d.lastmod_ts, size, xml)

        revision = Manifest.next_revision(conn)
        self.manifest.upsert(conn, documents, ("section", "key"), list(rows.values()))
        self.manifest.upsert(conn, shards, ("section", "shard_no"), [
            (s, n, st.url_count, st.byte_count, revision) for (s, n), st in shard_state.items() if st.touched
        ])
        self.manifest.upsert(conn, sections, ("name",), list(open_shards.items()))
        return counts

    @staticmethod
    def _load_docs(conn: Connection, idents: set[tuple[str, str]]) -> dict[tuple[str, str], _Doc]:
        # Per section, `key IN (...)` (one `= ANY(array)` on PostgreSQL): both use the unique index, where a
        # row-value IN over (section, key) had both databases scan (PostgreSQL fell to ~400 events/s).
        by_section: dict[str, list[str]] = {}
        for s, k in idents:
            by_section.setdefault(s, []).append(k)
        found: dict[tuple[str, str], _Doc] = {}
        query = "SELECT section, key, shard_no, version, size, xml IS NOT NULL FROM documents WHERE section ="
        for section, keys in by_section.items():
            queries: list[tuple[str, tuple[object, ...]]]
            if conn.dialect.name == "postgresql":
                queries = [(query + " %s AND key = ANY(%s)", (section, keys))]
            else:
                queries = []
                for i in range(0, len(keys), CHUNK):
                    chunk = keys[i:i + CHUNK]
                    marks = ",".join("?" * len(chunk))
                    queries.append((f"{query} ? AND key IN ({marks})", (section, *chunk)))
            for sql, params in queries:
                for s, k, n, v, size, live in conn.exec_driver_sql(sql, params):
                    found[(s, k)] = _Doc(n, v, size, bool(live))
        return found

    @staticmethod
    def _load_open_shards(conn: Connection, names: set[str]) -> dict[str, int]:
        query = select(sections.c.name, sections.c.open_shard).where(sections.c.name.in_(sorted(names)))
        return {name: int(n) for name, n in conn.execute(query)}

    @staticmethod
    def _load_shards(conn: Connection, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], _Shard]:
        found: dict[tuple[str, int], _Shard] = {}
        todo = list(wanted)
        key = tuple_(shards.c.section, shards.c.shard_no)
        for i in range(0, len(todo), CHUNK):
            query = select(shards.c.section, shards.c.shard_no, shards.c.url_count, shards.c.byte_count).where(
                key.in_(todo[i:i + CHUNK]))
            for s, n, count, size in conn.execute(query):
                found[(s, n)] = _Shard(count, size)
        return found
