from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import option, with_app
from sitemap_keeper.incremental.cli.serve import serve_until_interrupted
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.rebuild import Rebuilder
from sitemap_keeper.snapshot.sources import jsonl_chunks
from sitemap_keeper.snapshot.status import sitemap_lines

T = TypeVar("T")


def timed(label: str, fn: Callable[[], T]) -> T:
    started = time.monotonic()
    result = fn()
    click.echo(f"{label:<44} {time.monotonic() - started:8.2f}s  {result}")
    return result


@click.command("demo")
@option("--documents", type=int, default=1_000_000, help="Size of the synthetic catalog.")
@option("--changes", type=int, default=10_000, help="Change events applied after the rebuild.")
@option("--port", type=int, default=8080, help="Port to serve the result on.")
@option("--serve/--no-serve", default=True, help="Serve the result until Ctrl-C.")
@with_app
def command(app: App, documents: int, changes: int, port: int, serve: bool) -> None:
    """Rebuild a synthetic catalog, apply changes, publish incrementally, prune, and serve the result.

    \b
    Examples:
      sitemaps demo
      sitemaps demo --documents 10000 --no-serve
    """
    settings = app.settings
    # The demo replaces whatever catalog the data dir held, however small its own.
    app = App(settings.replace(allowed_hosts=settings.allowed_hosts or (synthetic.HOST,), max_shrink=1.0))
    click.echo(f"data in {app.settings.data_dir.resolve()}, manifest {app.settings.public()['database_url']}")

    def recorded() -> str:
        # Each step is timed alone: wait for the background diff (and IndexNow) of the last publish.
        app.announcer.wait()
        return "done"

    rebuilder = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, app.settings.workers,
                          app.settings.max_shrink)
    # A file, as `sitemaps rebuild --source` reads one: the load's figure is then the rebuild command's.
    source = app.settings.data_dir / "demo-catalog.jsonl"
    timed(f"write the catalog file ({documents:,} documents)", lambda: synthetic.write_catalog(source, documents))
    try:
        counts = timed(f"rebuild: load {documents:,} documents", lambda: rebuilder.rebuild(jsonl_chunks(str(source))))
    finally:
        source.unlink()
    timed("rebuild: publish a full generation", lambda: app.publisher.publish(full=True).message)
    timed("  record its diff (in the background)", recorded)
    events = list(synthetic.changes(changes, documents))
    batch = [(f"demo:{i}", e) for i, e in enumerate(events)]
    timed(f"apply {len(events):,} change events", lambda: app.applier.apply_raw(batch))
    timed("publish incrementally", lambda: app.publisher.publish().message)
    timed("  record its diff (in the background)", recorded)
    one = [("demo:one", synthetic.changes(1, documents, seed=99).__next__())]
    timed("apply one change", lambda: app.applier.apply_raw(one))
    timed("publish one changed document", lambda: app.publisher.publish().message)
    timed("  record its diff (in the background)", recorded)
    timed("publish with nothing dirty", lambda: app.publisher.publish().message)
    timed("prune, keeping 2", lambda: "deleted {}".format(", ".join(
        prune(app.manifest, app.store, app.router, keep=2, grace=0).deleted) or "nothing"))
    click.echo(f"{counts.applied:,} documents loaded; robots.txt lines:")
    for line in sitemap_lines(app.manifest, app.router.current(), app.settings.base_url):
        click.echo(f"  {line}")
    if serve:
        serve_until_interrupted(app, "127.0.0.1", port)
    app.close()
