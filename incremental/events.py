"""Document change events: the JSON objects carried by JSON-lines files and Kafka messages alike.

{"op": "upsert", "section": "books", "key": "123", "loc": "https://...", "lastmod": "...", "version": 17}
{"op": "delete", "section": "books", "key": "123", "version": 18}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sitemap_keeper.snapshot.document import (
    DOCUMENT_FIELDS,
    MAX_DOCUMENT_BYTES,
    InvalidDocument,
    Rules,
    check_fields,
    check_key,
    check_section,
    check_version,
    load_json,
)
from sitemap_keeper.snapshot.news import Article, parse_news
from sitemap_keeper.snapshot.render import DocumentRow, document_row

MAX_EVENT_BYTES = MAX_DOCUMENT_BYTES

# What the applier needs of a valid event, as plain tuples (cheap to send back from a worker process):
UpsertRow = DocumentRow
"""(section, key, version, loc, lastmod, lastmod_ts, size, xml): an upsert, validated and rendered."""
DeleteRow = tuple[str, str, int | None]
"""(section, key, version): a deletion."""
NewsUpsertRow = tuple[str, str, int | None, str, str | None, float | None, int, str, Article]
"""An upsert of a document with a `news` block: the UpsertRow and its Article (snapshot/news.py)."""
# Where each field is in those tuples (the hot path reads them by position: the C renderer makes them and the
# workers send them back, so they stay plain tuples).
SECTION: Final = 0
KEY: Final = 1
VERSION: Final = 2
LOC: Final = 3  # upserts only: their loc, lastmod, lastmod_ts, size and xml are [LOC:ARTICLE]
ARTICLE: Final = 8  # a NewsUpsertRow's Article
DELETE_FIELDS: Final = 3  # the length of a DeleteRow: every upsert is longer
NEWS_FIELDS: Final = 9  # the length of a NewsUpsertRow


def parse_event(raw: bytes | str, rules: Rules) -> UpsertRow | NewsUpsertRow | DeleteRow:
    """Decode and validate one event, or raise InvalidDocument with the reason."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidDocument(f"event is {len(raw)} bytes, at most {MAX_EVENT_BYTES} allowed")
    obj = load_json(raw)
    if not isinstance(obj, dict):
        raise InvalidDocument(f"an event must be a JSON object, got {type(obj).__name__}")
    op = obj.get("op", "upsert")
    if op == "upsert":
        row = document_row(obj, rules)
        news = obj.get("news")
        return row if news is None else (*row, parse_news(news, row[3]))
    if op == "delete":
        check_fields(obj, DOCUMENT_FIELDS, rules)
        return check_section(obj.get("section")), check_key(obj.get("key")), check_version(obj.get("version"))
    raise InvalidDocument(f"op must be 'upsert' or 'delete', got {op!r}")


@dataclass(slots=True)
class ParsedEvents:
    ops: list[UpsertRow | NewsUpsertRow | DeleteRow] = field(default_factory=list)  # the valid events, in order
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in the input, reason)
    # The index in the input of each op: one input may give none (a tombstone) or several (a key change).
    origins: list[int] = field(default_factory=list)


def parse_events(rules: Rules, raws: Sequence[bytes]) -> ParsedEvents:
    """Validate and render raw events into rows (runs in a worker process for large batches)."""
    out = ParsedEvents()
    ops, rejects, origins = out.ops, out.rejects, out.origins
    for i, raw in enumerate(raws):
        try:
            ops.append(parse_event(raw, rules))
        except InvalidDocument as exc:
            rejects.append((i, str(exc)))
        else:
            origins.append(i)
    return out
