"""Expected failures become one clear line and exit status 1, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from snapshot.document import InvalidDocument
from snapshot.manifest import PublishLockHeld, RebuildRunning
from snapshot.publish import EmptyManifest, Refused
from snapshot.rebuild import SourceShrank
from snapshot.rollback import RollbackError
from snapshot.routers.base import RouterError
from snapshot.stores.base import StoreError
from snapshot.verify import VerificationError

EXPECTED = (InvalidDocument, PublishLockHeld, RebuildRunning, EmptyManifest, Refused, SourceShrank, RollbackError,
            RouterError, StoreError, VerificationError, FileNotFoundError)


@contextmanager
def handled() -> Iterator[None]:
    try:
        yield
    except EXPECTED as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
