"""Logging set-up: text for people, or JSON lines for Loki, Elasticsearch or Cloud Logging.

A JSON line is one object: time, level, logger and message, plus the fields a log site passes with `extra=`
(generation, counts, durations, shard numbers), so they can be indexed and queried without parsing messages.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose own records repeat, at every retry, what our code reports once in its terms (kafka-python
# logs each refused connection as an ERROR): shown only at DEBUG.
CHATTY = ("kafka",)
# The one-shot commands' results (incremental/cli/results.py): in text format standard output says them already.
RESULTS = "sitemap_keeper.incremental.cli.results"


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every record of `level` and above to standard error, as text or as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    results_level = logging.NOTSET if fmt == "json" or level.upper() == "DEBUG" else logging.WARNING
    logging.getLogger(RESULTS).setLevel(results_level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level.upper() == "DEBUG" else logging.CRITICAL)


def fields(result: Any) -> dict[str, Any]:
    """A result record (dataclass) as flat JSON-ready fields, for `extra=` and for `--json` output."""
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "message"}
