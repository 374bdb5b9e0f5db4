"""Expected failures become one clear line and exit status 1, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from sitemap_keeper.snapshot.document import InvalidDocument
from sitemap_keeper.snapshot.manifest import PublishLockHeld, RebuildRunning
from sitemap_keeper.snapshot.publish import EmptyManifest, Refused
from sitemap_keeper.snapshot.rebuild import SourceShrank
from sitemap_keeper.snapshot.rollback import RollbackError
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.stores.base import StoreError
from sitemap_keeper.snapshot.verify import VerificationError

EXPECTED = (InvalidDocument, PublishLockHeld, RebuildRunning, EmptyManifest, Refused, SourceShrank, RollbackError,
            RouterError, StoreError, VerificationError, FileNotFoundError)


@contextmanager
def handled() -> Iterator[None]:
    try:
        yield
    except EXPECTED as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
