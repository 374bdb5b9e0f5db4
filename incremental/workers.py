"""What the apply path's worker processes do with a chunk of events: validate and render them, and read what
the manifest holds for their documents, on a read-only connection of their own.

Reading here is as good as reading in the applying process: the applier submits a chunk only once it holds the
manifest's write lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), and writes nothing before every
chunk is back, so every read in between sees the same committed state its own transaction sees. Should the
read fail, the worker says so (None) and the applying process reads for itself.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from incremental import document_rows
from incremental.document_rows import Ident, Stored
from incremental.events import ParsedEvents, parse_events
from snapshot.document import Rules

log = logging.getLogger(__name__)

Reader = tuple[str, str]  # (dialect, where): ("sqlite", file path) or ("postgresql", libpq connection URI)

_connections: dict[Reader, Any] = {}  # one per worker process, kept between tasks


def reader_for(engine: Engine) -> Reader | None:
    """How a worker process reaches the manifest, if it can (an in-memory SQLite database it cannot)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return ("sqlite", url.database) if url.database and url.database != ":memory:" else None
    if url.get_backend_name() == "postgresql":
        return "postgresql", url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


def parse_and_load(rules: Rules, reader: Reader | None, raws: Sequence[bytes]
                   ) -> tuple[ParsedEvents, dict[Ident, Stored] | None]:
    """The parsed chunk, and the stored state of its documents (None: not read)."""
    parsed = parse_events(rules, raws)
    if reader is None or not parsed.ops:
        return parsed, None
    try:
        stored = document_rows.load_all(_connection(reader), reader[0], {(op[0], op[1]) for op in parsed.ops})
    except Exception as exc:  # the applying process reads them instead, and meets any real error itself
        log.warning("a parsing worker could not read the manifest (%s); the applier will", exc.__class__.__name__)
        conn = _connections.pop(reader, None)
        if conn is not None:
            conn.close()
        return parsed, None
    return parsed, stored


def _connection(reader: Reader) -> Any:
    conn = _connections.get(reader)
    if conn is None:
        dialect, where = reader
        if dialect == "sqlite":
            conn = sqlite3.connect(where, isolation_level=None, timeout=60)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA cache_size = -32768")
        else:
            import psycopg

            conn = psycopg.connect(where, autocommit=True)
            conn.execute("SET default_transaction_read_only = on")
        _connections[reader] = conn
    return conn
