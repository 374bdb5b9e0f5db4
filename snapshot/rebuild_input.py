"""Rebuild input: a JSON-lines file of documents, or a query against the application's own database (not the
change feed's event sources: incremental/sources/)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import create_engine, text

from sitemap_keeper.snapshot.document import DOCUMENT_FIELDS, InvalidDocument
from sitemap_keeper.snapshot.mapping import Mapping, SectionMapping
from sitemap_keeper.snapshot.rebuild import BLOCK_SIZE, INVALID, Chunk

JSON_FIELDS = ("images", "alternates", "news", "video")  # JSON text in a query's column


def jsonl_chunks(
    path: str, on_bytes: Callable[[int], None] | None = None, block_size: int = BLOCK_SIZE
) -> Iterator[Chunk]:
    """The file in blocks of whole lines, numbered from 1; `-` reads standard input. Lines are split later."""
    name = "stdin" if path == "-" else Path(path).name
    stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    first, rest = 1, b""
    try:
        while data := stream.read(block_size):
            if on_bytes is not None:
                on_bytes(len(data))
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a block: keep reading
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield Chunk(name, first, block[:-1])
            first += block.count(b"\n")
        if rest:
            yield Chunk(name, first, rest)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def jsonl_lines(path: str, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[str, bytes]]:
    """(`file:line`, raw line) for each non-blank line; `-` reads standard input. `on_bytes` as jsonl_chunks."""
    for chunk in jsonl_chunks(path, on_bytes=on_bytes):
        for n, line in chunk.payloads():
            assert isinstance(line, bytes)
            yield f"{chunk.name}:{n}", line


def sql_rows(database_url: str, query: str, ignore_extra: bool = False) -> Iterator[dict[str, Any]]:
    """Stream the rows of `query` (never all in memory); its columns name the document fields.

    `section`, `key` and `loc` are required; `lastmod` may be a date, a datetime or a string; `images` and
    `alternates` may be JSON text. A column that is no document field refuses the query before any row is
    read (UnknownColumns), unless `ignore_extra`: then it is left out of every row.
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=10_000).execute(text(query))
            columns = result.keys()  # a result iterates over its rows, not its columns
            extra = [c for c in columns if c not in DOCUMENT_FIELDS]
            if extra and not ignore_extra:
                raise UnknownColumns(
                    f"the query's column{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                    f"{'are' if len(extra) > 1 else 'is'} no document field (the fields: "
                    f"{', '.join(sorted(DOCUMENT_FIELDS - {'op'}))}): select only those, or give "
                    "--extra-fields ignore (SITEMAPS_EXTRA_FIELDS) to leave the others out"
                )
            for row in result.mappings():
                found = dict(row)
                for name in extra:
                    del found[name]
                yield document_fields(found)
    finally:
        engine.dispose()


class UnknownColumns(InvalidDocument):
    """A rebuild query selects a column that is no document field: its data would be silently dropped."""


def document_fields(row: dict[str, Any]) -> dict[str, Any]:
    value = row.get("lastmod")
    if isinstance(value, dt.datetime):
        row["lastmod"] = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    elif isinstance(value, dt.date):
        row["lastmod"] = value.isoformat()
    if row.get("key") is not None and not isinstance(row["key"], str):
        row["key"] = str(row["key"])
    for name in JSON_FIELDS:
        if isinstance(row.get(name), str | bytes):
            with contextlib.suppress(orjson.JSONDecodeError):  # else validation names the field
                row[name] = orjson.loads(row[name])
    if isinstance(row.get("priority"), Decimal):
        row["priority"] = float(row["priority"])  # a NUMERIC column
    return row


def mapping_rows(database_url: str, mapping: Mapping) -> Iterator[dict[str, Any]]:
    """Each section's documents by its mapping's query (streamed: a server-side cursor on PostgreSQL).

    A row whose key or loc columns cannot make a document is handed on as a row without them, so the rebuild
    refuses it with the reason, as any invalid document.
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            for sec in mapping.sections:
                result = conn.execution_options(stream_results=True, yield_per=10_000).execute(sec.query())
                for row in result.mappings():
                    yield _mapped(sec, row)
    finally:
        engine.dispose()


def _mapped(sec: SectionMapping, row: Any) -> dict[str, Any]:
    try:
        return sec.document(row)
    except InvalidDocument as exc:
        return {INVALID: str(exc), "section": sec.section, "row": dict(row)}
