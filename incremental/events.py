"""Document change events: the JSON objects carried by JSON-lines files and Kafka messages alike.

    {"op": "upsert", "section": "books", "key": "123", "loc": "https://...", "lastmod": "...", "version": 17}
    {"op": "delete", "section": "books", "key": "123", "version": 18}
"""

from __future__ import annotations

from dataclasses import dataclass

from snapshot.document import (
    Document,
    InvalidDocument,
    Rules,
    check_key,
    check_section,
    check_version,
    load_json,
    parse_document,
)

MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Upsert:
    document: Document

    @property
    def section(self) -> str:
        return self.document.section

    @property
    def key(self) -> str:
        return self.document.key

    @property
    def version(self) -> int | None:
        return self.document.version


@dataclass(frozen=True, slots=True)
class Delete:
    section: str
    key: str
    version: int | None = None


Event = Upsert | Delete


def parse_event(raw: bytes | str, rules: Rules) -> Event:
    """Decode and validate one event, or raise InvalidDocument with the reason."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidDocument(f"event is {len(raw)} bytes, at most {MAX_EVENT_BYTES} allowed")
    obj = load_json(raw)
    if not isinstance(obj, dict):
        raise InvalidDocument(f"an event must be a JSON object, got {type(obj).__name__}")
    op = obj.get("op", "upsert")
    if op == "upsert":
        return Upsert(parse_document(obj, rules))
    if op == "delete":
        return Delete(check_section(obj.get("section")), check_key(obj.get("key")), check_version(obj.get("version")))
    raise InvalidDocument(f"op must be 'upsert' or 'delete', got {op!r}")
