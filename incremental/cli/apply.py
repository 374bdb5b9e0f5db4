from __future__ import annotations

import os
import time
from pathlib import Path

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.cdc import format_options, use_format
from sitemap_keeper.incremental.cli.options import LIMITS, MANIFEST, SITE, extra_fields_option, with_app
from sitemap_keeper.incremental.cli.progress import Progress
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.incremental.logs import fields
from sitemap_keeper.snapshot.manifest.errors import RebuildRunning
from sitemap_keeper.snapshot.manifest.records import Counts
from sitemap_keeper.snapshot.rebuild_input import jsonl_lines


@click.command("apply")
@click.argument("files", nargs=-1, required=True)
# Not SITEMAPS_BATCH_SIZE: that is the service's (run, replay), with a default of its own.
@click.option("--batch-size", type=int, default=5_000, show_default=True, help="Events per transaction.")
@format_options
@json_option
@with_app(MANIFEST, SITE, LIMITS)
@extra_fields_option
def command(
    app: App, files: tuple[str, ...], batch_size: int, event_format: str, mapping: Path | None, as_json: bool
) -> None:
    """Apply change events from JSON-lines FILES (`-` for standard input) to the manifest.

    \b
    Examples:
      sitemaps apply changes.jsonl
      tail -n 1000 events.jsonl | sitemaps apply -
      sitemaps apply --format debezium --mapping mapping.yaml messages.jsonl
    """
    use_format(app, event_format, mapping)
    total = Counts()
    started = time.monotonic()
    size = None if "-" in files else sum(os.path.getsize(f) for f in files)
    with Progress("applying (bytes)" if size else "applying (bytes read)", size) as bar:
        for path in files:
            batch: list[tuple[str, bytes]] = []
            for item in jsonl_lines(path, on_bytes=bar.update):
                batch.append(item)
                if len(batch) >= batch_size:
                    total.add(_apply(app, batch))
                    batch = []
            total.add(_apply(app, batch))
    seconds = time.monotonic() - started
    echo_result(as_json, f"{total} in {seconds:.2f}s", {**fields(total), "seconds": round(seconds, 3)}, "applied")


def _apply(app: App, batch: list[tuple[str, bytes]]) -> Counts:
    """Apply one batch; while a rebuild runs, wait for it (its swap would drop what is applied meanwhile)."""
    told = False
    while True:
        if not app.manifest.locks.rebuild_running():
            try:
                return app.applier.apply_raw(batch)
            except RebuildRunning:  # it started just now
                pass
        if not told:
            click.echo("a rebuild is running: waiting until it has swapped its tables in", err=True)
            told = True
        time.sleep(1.0)
