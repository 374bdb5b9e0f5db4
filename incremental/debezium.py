"""Debezium change events (PostgreSQL and MySQL connectors, JSON converter) into the applier's upserts and deletes.

A message's value is either the envelope `{"schema": ..., "payload": {...}}` (`schemas.enable=true`) or the
payload alone. The payload's `source` names the table (`schema`, or MySQL's `db`, and `table`); the mapping
(snapshot/mapping.py) says which sections it feeds. Per section:

- `c`, `r` (snapshot read), `u`: the `after` row is upserted if it passes the mapping's filter, else deleted
  (it was unpublished, soft-deleted, ...). An update whose `before` row has the key columns and another key
  also deletes the old key, first.
- `d`: the `before` row's key is deleted (with REPLICA IDENTITY DEFAULT it holds the primary key only).
- a tombstone (a null value) is skipped; a truncate (`t`) is refused with its reason, never applied as
  "delete every document": the operator rebuilds.

The version of every change is the source's position, so a redelivered or older event counts as stale:
PostgreSQL's `lsn`; MySQL's binlog file number, position and row within the event; else `ts_ms`. Snapshot
reads have version 0 (SNAPSHOT_VERSION).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, overload

import orjson

from sitemap_keeper.incremental.events import MAX_EVENT_BYTES, DeleteRow, ParsedEvents, UpsertRow
from sitemap_keeper.snapshot.document import InvalidDocument, Rules, load_json
from sitemap_keeper.snapshot.mapping import Mapping, SectionMapping
from sitemap_keeper.snapshot.render import document_row

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BINLOG_SEQ_RE = re.compile(r"\.(\d+)$")
# A MySQL version packs (binlog file number, position, row): 20, 32 and 11 bits, under 2**63.
POS_BITS, ROW_BITS = 32, 11
MAX_BINLOG_SEQ = 2 ** (63 - POS_BITS - ROW_BITS)
DECIMAL = "org.apache.kafka.connect.data.Decimal"
CONNECT_TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
CONNECT_DATE = "org.apache.kafka.connect.data.Date"
ROW_OPS = frozenset({"c", "r", "u", "d"})
# A snapshot read is the row as the snapshot found it: it fills in a document no change has touched, and never
# overrides one. Not its position: on PostgreSQL a transaction running across the snapshot's start commits
# after it, unseen by it, with changes logged before the snapshot's lsn (they must not count as stale).
SNAPSHOT_VERSION = 0
ENVELOPE_START, PAYLOAD_KEY = b'{"schema":', b',"payload":'
MAX_SCHEMAS = 256  # distinct envelope schemas remembered (a table's changes when its columns change)

Op = UpsertRow | DeleteRow
FieldTypes = dict[str, tuple[str | None, Any]]  # column -> (semantic type name, its parameters)


class Envelopes:
    """The envelopes' schemas a process has seen (the last MAX_SCHEMAS), and their rows' column types.

    Kafka Connect's JsonConverter writes an envelope compact, `{"schema":<schema>,"payload":<payload>}`: the
    schema, the bulk of the bytes, is the same for every message of a table (until its columns change). A
    message is matched by comparing its first bytes with the starts known, `{"schema":<schema>,"payload":`,
    rather than searched for its payload; each schema is decoded once.
    """

    def __init__(self) -> None:
        self.starts: list[bytes] = []  # oldest first
        self.types: dict[bytes, FieldTypes | None] = {}  # start -> its row's column types (None: not JSON)

    def start_of(self, raw: bytes) -> bytes | None:
        """The envelope start `raw` begins with (the same object for every message with that schema); None if
        `raw` is not laid out so (then it is decoded whole)."""
        if not raw.startswith(ENVELOPE_START) or not raw.endswith(b"}"):
            return None
        for start in self.starts:
            if raw.startswith(start):
                return start
        cut = raw.find(PAYLOAD_KEY)
        if cut < 0:
            return None
        start = raw[: cut + len(PAYLOAD_KEY)]
        if len(self.starts) == MAX_SCHEMAS:
            self.starts.pop(0)
        self.starts.append(start)
        return start

    def types_of(self, start: bytes) -> FieldTypes | None:
        """The column types the schema of `start` gives its rows; None if it is not JSON (a start cut at a
        `,"payload":` inside the schema, or a broken message): then the message is decoded whole."""
        if start in self.types:
            return self.types[start]
        try:
            types: FieldTypes | None = row_types(orjson.loads(start[len(ENVELOPE_START) : -len(PAYLOAD_KEY)]))
        except orjson.JSONDecodeError:
            types = None
        if len(self.types) == MAX_SCHEMAS:
            del self.types[next(iter(self.types))]
        self.types[start] = types
        return types


# Per process: kept across a worker's tasks, never pickled.
ENVELOPES = Envelopes()


class Shipped(Sequence[bytes]):
    """A chunk of messages as the applying process sends it to a worker: each compact envelope's start once,
    and what follows it in each message (its payload and closing brace), a sixth of the bytes. As a sequence,
    the messages as they came."""

    __slots__ = ("rests", "starts", "which")

    def __init__(self, starts: list[bytes], which: list[int], rests: list[bytes]) -> None:
        self.starts = starts  # the distinct envelope starts of the chunk's messages
        self.which = which  # per message: 1 + the index of its start, or 0: its rest is the message whole
        self.rests = rests

    @classmethod
    def of(cls, raws: Sequence[bytes]) -> Shipped:
        starts: list[bytes] = []
        slot: dict[bytes, int] = {}
        which: list[int] = []
        rests: list[bytes] = []
        start_of = ENVELOPES.start_of
        for raw in raws:
            start = start_of(raw) if len(raw) <= MAX_EVENT_BYTES else None
            if start is None:
                which.append(0)
                rests.append(raw)
                continue
            k = slot.get(start)
            if k is None:
                starts.append(start)
                k = slot[start] = len(starts)
            which.append(k)
            rests.append(raw[len(start) :])
        return cls(starts, which, rests)

    def __reduce__(self) -> tuple[type[Shipped], tuple[list[bytes], list[int], list[bytes]]]:
        return Shipped, (self.starts, self.which, self.rests)

    def __len__(self) -> int:
        return len(self.rests)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = self.which[i]
        return self.starts[k - 1] + self.rests[i] if k else self.rests[i]


def temporal(value: Any, name: str | None, column: str) -> Any:
    """A column's value decoded by its Debezium semantic type (epoch integers are UTC), else as it is."""
    if value is None or name is None:
        return value
    try:
        if name in ("io.debezium.time.Timestamp", CONNECT_TIMESTAMP):
            return EPOCH + dt.timedelta(milliseconds=_int(value))
        if name == "io.debezium.time.MicroTimestamp":
            return EPOCH + dt.timedelta(microseconds=_int(value))
        if name == "io.debezium.time.NanoTimestamp":
            return EPOCH + dt.timedelta(microseconds=_int(value) // 1000)
        if name in ("io.debezium.time.Date", CONNECT_DATE):
            return (EPOCH + dt.timedelta(days=_int(value))).date()
        if name == "io.debezium.time.ZonedTimestamp":
            if not isinstance(value, str):
                raise TypeError(type(value).__name__)
            return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidDocument(f"column {column} is not a valid {name.rsplit('.', 1)[-1]}: {value!r} ({exc})") from None
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an integer was expected, got {type(value).__name__}")
    return value


def decimal(value: Any, scale: int, column: str) -> Any:
    """Connect's Decimal (base64 of the unscaled big-endian integer) as a float."""
    if not isinstance(value, str):
        return value
    try:
        return int.from_bytes(base64.b64decode(value, validate=True), "big", signed=True) / 10**scale
    except ValueError:
        raise InvalidDocument(f"column {column} is not a valid Decimal: {value!r}") from None


def position(source: dict[str, Any]) -> int:
    """The event's version: where the source database wrote it."""
    lsn = source.get("lsn")
    if lsn is not None:
        if isinstance(lsn, bool) or not isinstance(lsn, int) or not 0 <= lsn < 2**63:
            raise InvalidDocument(f"source.lsn must be a non-negative integer, got {lsn!r}")
        return lsn
    file, pos, row = source.get("file"), source.get("pos"), source.get("row") or 0
    if file is not None and pos is not None:
        m = BINLOG_SEQ_RE.search(file) if isinstance(file, str) else None
        if (
            not m
            or not isinstance(pos, int)
            or not isinstance(row, int)
            or not 0 <= pos < 2**POS_BITS
            or not 0 <= row < 2**ROW_BITS
            or int(m.group(1)) >= MAX_BINLOG_SEQ
        ):
            raise InvalidDocument(f"cannot order by the binlog position {file!r}:{pos!r} row {row!r}")
        return (int(m.group(1)) << (POS_BITS + ROW_BITS)) | (pos << ROW_BITS) | row
    ts = source.get("ts_ms")
    if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0:
        return ts
    raise InvalidDocument("source has no lsn, binlog file and pos, or ts_ms to order the event by")


def row_types(schema: Any) -> FieldTypes:
    """column -> (semantic type, parameters), from the envelope schema's `after` (or `before`) struct."""
    if not isinstance(schema, dict):
        return {}
    for part in schema.get("fields") or ():
        if isinstance(part, dict) and part.get("field") in ("after", "before") and part.get("fields"):
            return {
                f["field"]: (f.get("name"), f.get("parameters"))
                for f in part["fields"]
                if isinstance(f, dict) and "field" in f
            }
    return {}


class DebeziumParser:
    """`parse_events` for Debezium messages: (rules, raw values) -> ParsedEvents. Picklable, for the workers."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.tables = mapping.tables

    def __call__(self, rules: Rules, raws: Sequence[bytes]) -> ParsedEvents:
        out = ParsedEvents()
        shipped = raws if isinstance(raws, Shipped) else None
        for i, rest in enumerate(raws if shipped is None else shipped.rests):
            start = shipped.starts[k - 1] if shipped is not None and (k := shipped.which[i]) else None
            if not rest and start is None:
                continue  # a tombstone: Kafka's compaction marker after a delete, nothing to apply
            try:
                ops = self.decode(rest, rules) if start is None else self._enveloped(start, rest, rules)
            except InvalidDocument as exc:
                out.rejects.append((i, str(exc)))
            else:
                out.ops.extend(ops)
                out.origins.extend([i] * len(ops))
        return out

    @staticmethod
    def shipped(raws: Sequence[bytes]) -> Sequence[bytes]:
        """A chunk as the applying process sends it to a worker (apply.py): each envelope's schema once."""
        return Shipped.of(raws)

    def decode(self, raw: bytes, rules: Rules) -> list[Op]:
        """The upserts and deletes of one message, or InvalidDocument with the reason."""
        start = ENVELOPES.start_of(raw) if len(raw) <= MAX_EVENT_BYTES else None
        if start is not None:
            return self._enveloped(start, raw[len(start) :], rules)
        return self._whole(raw, rules)

    def _enveloped(self, start: bytes, rest: bytes, rules: Rules) -> list[Op]:
        """A compact envelope's message, `start` + `rest`: its schema decoded once, its payload alone (else the
        message whole, for the reason it is refused)."""
        types = ENVELOPES.types_of(start)
        if types is not None and len(start) + len(rest) <= MAX_EVENT_BYTES:
            try:
                payload = orjson.loads(rest[:-1])
            except orjson.JSONDecodeError:
                pass
            else:
                return self._payload(types, payload, rules)
        return self._whole(start + rest, rules)

    def _whole(self, raw: bytes, rules: Rules) -> list[Op]:
        """A message decoded whole: any layout of the envelope, or none."""
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidDocument(f"event is {len(raw)} bytes, at most {MAX_EVENT_BYTES} allowed")
        obj = load_json(raw)
        if obj is None:
            return []  # a tombstone written as JSON null
        if not isinstance(obj, dict):
            raise InvalidDocument(f"a Debezium message must be a JSON object, got {type(obj).__name__}")
        enveloped = "payload" in obj and "op" not in obj
        types, payload = (row_types(obj.get("schema")), obj["payload"]) if enveloped else ({}, obj)
        return self._payload(types, payload, rules)

    def _payload(self, types: FieldTypes, payload: Any, rules: Rules) -> list[Op]:
        """The upserts and deletes of a message's payload, its row's column types given."""
        if payload is None:
            return []
        if not isinstance(payload, dict) or not isinstance(payload.get("source"), dict):
            raise InvalidDocument("not a Debezium change event: no payload with a source block")
        source, op = payload["source"], payload.get("op")
        table = f"{source.get('schema') or source.get('db')}.{source.get('table')}"
        if op == "t":
            raise InvalidDocument(
                f"truncate of {table}: not applied as a deletion of every document; "
                "rebuild from the table (sitemaps rebuild --mapping) if it is meant"
            )
        if op not in ROW_OPS:
            raise InvalidDocument(f"op must be c, r, u or d (t is refused), got {op!r}")
        sections = self.tables.get(table)
        if not sections:
            raise InvalidDocument(f"unknown table {table}: no section of the mapping reads it")
        version = SNAPSHOT_VERSION if op == "r" else position(source)
        ops: list[Op] = []
        for sec in sections:
            ops.extend(self._section(sec, op, payload, types, version, rules))
        return ops

    def _section(
        self, sec: SectionMapping, op: str, payload: dict[str, Any], types: FieldTypes, version: int, rules: Rules
    ) -> list[Op]:
        before, after = payload.get("before"), payload.get("after")
        if op == "d":
            if not isinstance(before, dict) or not sec.has_key(before):
                raise InvalidDocument(
                    f"delete of a {sec.qualified} row without the key columns "
                    f"{', '.join(sec.key)} in before (REPLICA IDENTITY?)"
                )
            return [(sec.section, sec.key_of(before), version)]
        if not isinstance(after, dict):
            raise InvalidDocument(f"op {op!r} without an after row")
        if not sec.has_key(after):
            raise InvalidDocument(f"a {sec.qualified} row without the key columns {', '.join(sec.key)}")
        key = sec.key_of(after)
        ops: list[Op] = []
        if op == "u" and isinstance(before, dict) and sec.has_key(before) and (old := sec.key_of(before)) != key:
            ops.append((sec.section, old, version))  # the key changed: the old document goes
        if not sec.matches(after):
            ops.append((sec.section, key, version))  # unpublished, soft-deleted, ...: not (or no more) a document
            return ops
        ops.append(document_row(sec.document(self._decoded(sec, after, types), version), rules))
        return ops

    @staticmethod
    def _decoded(sec: SectionMapping, row: dict[str, Any], types: FieldTypes) -> dict[str, Any]:
        """The row with its lastmod and priority columns decoded by their schema (or declared) types."""
        row = dict(row)
        for col in (sec.lastmod, sec.priority):
            if col is None or col not in row:
                continue
            name, params = types.get(col) or (sec.types.get(col), None)
            if name is None:
                continue
            if name == DECIMAL:
                row[col] = decimal(row[col], int((params or {}).get("scale", 0)), col)
            else:
                row[col] = temporal(row[col], name, col)
        return row
