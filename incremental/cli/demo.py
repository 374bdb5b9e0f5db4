from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.serve import serve_until_interrupted
from sitemap_keeper.snapshot import synthetic
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.rebuild import Rebuilder
from sitemap_keeper.snapshot.rebuild_input import jsonl_chunks
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.status import sitemap_lines

T = TypeVar("T")

DATA_DIR = Path("sitemaps-demo")
MARK = ".sitemaps-demo"  # in a data dir the demo made: only such a directory (or an empty one) is reused


def timed(label: str, fn: Callable[[], T]) -> T:
    started = time.monotonic()
    result = fn()
    click.echo(f"{label:<44} {time.monotonic() - started:8.2f}s  {result}")
    return result


@click.command("demo")
@click.option("--documents", type=int, default=1_000_000, show_default=True, help="Size of the synthetic catalog.")
@click.option("--changes", type=int, default=10_000, show_default=True, help="Change events applied after the rebuild.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to serve the result on.")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the result until Ctrl-C.")
# Not SITEMAPS_DATA_DIR: inside a real site's environment that names the real site's data.
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DATA_DIR,
    show_default=True,
    help="The demo's own directory: its SQLite manifest, store and symlink router.",
)
def command(documents: int, changes: int, port: int, serve: bool, data_dir: Path) -> None:
    """Rebuild a synthetic catalog, apply changes, publish incrementally, prune, and serve the result.

    The demo only ever uses a directory of its own (an SQLite manifest, a local store and a symlink router in
    it), whatever the SITEMAPS_* settings say: it never touches a configured site.

    \b
    Examples:
      sitemaps demo
      sitemaps demo --documents 10000 --no-serve --data-dir /tmp/demo
    """
    _claim(data_dir)
    # The demo replaces whatever catalog its data dir held, however small its own.
    app = App(Settings(data_dir=data_dir, allowed_hosts=(synthetic.HOST,), max_shrink=1.0))
    click.echo(
        f"demo data in {data_dir.resolve()} (its own SQLite manifest, local store and symlink router; "
        "SITEMAPS_* settings are not used)"
    )
    try:
        _run(app, documents, changes, port, serve)
    finally:
        app.close()


def _claim(data_dir: Path) -> None:
    """Use `data_dir` only if the demo made it, or it is new or empty: never another site's data."""
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / MARK).exists():
        raise click.UsageError(f"{data_dir} holds files the demo did not make: give a new or empty --data-dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARK).write_text("made by `sitemaps demo`: it may replace everything in this directory\n")


def _run(app: App, documents: int, changes: int, port: int, serve: bool) -> None:
    def recorded() -> str:
        # Each step is timed alone: wait for the background diff (and IndexNow) of the last publish.
        app.announcer.wait()
        return "done"

    rebuilder = Rebuilder(
        app.manifest, app.settings.rules, app.settings.limits, app.settings.workers, app.settings.max_shrink
    )
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
    timed(
        "prune, keeping 2",
        lambda: "deleted {}".format(
            ", ".join(prune(app.manifest, app.store, app.router, keep=2, grace=0).deleted) or "nothing"
        ),
    )
    click.echo(f"{counts.applied:,} documents loaded; robots.txt lines:")
    for line in sitemap_lines(app.manifest, app.router.current(), app.settings.base_url):
        click.echo(f"  {line}")
    if serve:
        serve_until_interrupted(app, "127.0.0.1", port)
