"""Everyday failures become one clear line on standard error and a conventional exit status, not a traceback.

Exit status 2: usage and settings (click's own, a database URL naming a driver that is not installed);
1: at run time (a database or broker that cannot be reached, a busy port, a full disk, a refused publish).
`--debug` or SITEMAPS_DEBUG=1 lets the traceback through. Anything not recognised here is a bug, and is
shown with its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import click

from sitemap_keeper.snapshot.document import InvalidDocument
from sitemap_keeper.snapshot.manifest.errors import ManifestDamaged, PublishLockHeld, RebuildRunning
from sitemap_keeper.snapshot.rebuild import SourceShrank
from sitemap_keeper.snapshot.refusals import EmptyManifest, Refused
from sitemap_keeper.snapshot.rollback import RollbackError
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.stores.base import StoreError
from sitemap_keeper.snapshot.verify import VerificationError

EXPECTED = (
    InvalidDocument,
    ManifestDamaged,
    PublishLockHeld,
    RebuildRunning,
    EmptyManifest,
    Refused,
    SourceShrank,
    RollbackError,
    RouterError,
    StoreError,
    VerificationError,
    FileNotFoundError,
)


USAGE, RUNTIME = 2, 1
_debug = False


class Failure(NamedTuple):
    status: int
    message: str


DEBUG_ENV = "SITEMAPS_DEBUG"  # `sitemaps --debug` (incremental/cli/__init__.py)


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debugging() -> bool:
    """--debug, or its variable: read here too, for a failure before the options are parsed."""
    return _debug or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


@contextmanager
def handled() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `sitemaps`: the help, as click shows it
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(RUNTIME)
    except Exception as exc:
        failure = _click(exc) or describe(exc)
        if failure is None:
            raise
        if debugging() and not isinstance(exc, click.ClickException):
            traceback.print_exc()
        click.echo(f"error: {failure.message}", err=True)
        sys.exit(failure.status)


def describe(exc: Exception) -> Failure | None:
    """The one line and exit status of an everyday failure; None for anything else (a bug)."""
    if isinstance(exc, EXPECTED):
        return Failure(RUNTIME, str(exc))
    return _database(exc) or _kafka(exc) or _system(exc)


def _click(exc: Exception) -> Failure | None:
    """click's usage errors (status 2) and a command's own ClickException (1), on one line."""
    if isinstance(exc, click.UsageError):
        where = f"sitemaps {exc.ctx.command_path.partition(' ')[2]}".rstrip() if exc.ctx else "sitemaps"
        return Failure(exc.exit_code, f"{exc.format_message()} (see '{where} --help')")
    if isinstance(exc, click.ClickException):
        return Failure(exc.exit_code, exc.format_message())
    return None


def _from_sqlalchemy(exc: BaseException) -> bool:
    return any("/sqlalchemy/" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _database(exc: Exception) -> Failure | None:
    if "sqlalchemy" not in sys.modules:  # nothing raised it
        return None
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.NoSuchModuleError | sa.ArgumentError):
        return Failure(USAGE, f"bad database URL: {exc}")
    if isinstance(exc, sa.DBAPIError):  # only the driver's own message: the statement may hold data
        return Failure(RUNTIME, f"database error: {_first_line(exc.orig or exc)}")
    return None


def _kafka(exc: Exception) -> Failure | None:
    if "kafka.errors" not in sys.modules:
        return None
    from kafka.errors import KafkaError

    return Failure(RUNTIME, f"Kafka: {_first_line(exc)}") if isinstance(exc, KafkaError) else None


def _system(exc: Exception) -> Failure | None:
    if isinstance(exc, ModuleNotFoundError) and _from_sqlalchemy(exc):  # a dialect importing its driver
        return Failure(
            USAGE,
            f"{exc}: the database URL names a driver that is not installed (pip install it beside sitemap-keeper)",
        )
    if not isinstance(exc, OSError):
        return None
    if exc.errno == errno.EADDRINUSE:
        return Failure(RUNTIME, f"cannot listen: {exc.strerror} (another process has that port: choose another)")
    if exc.errno == errno.ENOSPC:
        return Failure(RUNTIME, f"disk full: {exc}")
    return Failure(RUNTIME, str(exc))
