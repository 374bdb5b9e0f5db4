from __future__ import annotations

import time

import click

from incremental.app import App
from incremental.cli.options import option, with_app
from snapshot.manifest import Counts
from snapshot.sources import jsonl_lines


@click.command("apply")
@click.argument("files", nargs=-1, required=True)
@option("--batch-size", type=int, default=5_000, help="Events per transaction.")
@with_app
def command(app: App, files: tuple[str, ...], batch_size: int) -> None:
    """Apply change events from JSON-lines FILES (`-` for standard input) to the manifest."""
    total = Counts()
    started = time.monotonic()
    for path in files:
        batch: list[tuple[str, bytes]] = []
        for item in jsonl_lines(path):
            batch.append(item)
            if len(batch) >= batch_size:
                total.add(app.applier.apply_raw(batch))
                batch = []
        total.add(app.applier.apply_raw(batch))
    seconds = time.monotonic() - started
    click.echo(f"{total} in {seconds:.2f}s")
