"""A command's result: text on standard output, or with `--json` one JSON object on one line; and, for log
collectors, a log record `event=<command>` carrying the same fields (shown in JSON log format: in text format
standard output already says it, see incremental/logs.py)."""

from __future__ import annotations

import logging
from typing import Any

import click
import orjson

log = logging.getLogger(__name__)
# LogRecord attributes an `extra` field may not replace.
RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as one JSON object (one line), not as text."
)


def echo_result(as_json: bool, text: str | None, result: dict[str, Any], event: str) -> None:
    """Print `text` (None: already printed) or the JSON of `result`; log `result` as the fields of `event`."""
    if as_json:
        click.echo(orjson.dumps(result).decode())
    elif text is not None:
        click.echo(text)
    fields = {k: v for k, v in result.items() if k not in RESERVED}
    log.info("%s", text or event, extra={"event": event, **fields})
