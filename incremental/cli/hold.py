from __future__ import annotations

import time

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, ROUTER, option, with_app
from sitemap_keeper.snapshot import hold as holds
from sitemap_keeper.snapshot.hold import Hold, operator
from sitemap_keeper.snapshot.manifest.errors import PublishLockHeld

# Seconds `hold` waits for a publish in progress to finish (or give up) before it holds the site.
PUBLISH_WAIT = 600.0

reason_option = option("--reason", default=None, help="Why (status and the refused publishes show it).")
by_option = option("--by", default=None, help="Who holds the site (default: the OS user and host).")


@click.command("hold")
@reason_option
@by_option
@with_app(MANIFEST, ROUTER)
def command(app: App, reason: str | None, by: str | None) -> None:
    """Keep the live generation where it is: publishes apply nothing to the router until `sitemaps resume`.

    Events are still applied to the manifest meanwhile; `resume` and the next publish bring them live.

    \b
    Examples:
      sitemaps hold --reason "bad feed from the catalog team"
      sitemaps status
      sitemaps resume
    """
    try:
        held = _hold(app, reason, by, 0.0)
    except PublishLockHeld:
        click.echo("a publish is in progress: waiting for it to end before holding", err=True)
        held = _hold(app, reason, by, PUBLISH_WAIT)
    click.echo(f"{held.describe()}: publishes switch nothing until `sitemaps resume`")


def _hold(app: App, reason: str | None, by: str | None, patience: float) -> Hold:
    """Under the publish lock: a publish that started before the hold cannot switch after it."""
    with app.manifest.locks.publish(patience):
        was = holds.current(app.manifest)
        if was is not None:
            click.echo("already held: left as it was", err=True)
            return was
        hold = Hold(app.router.current(), time.time(), by or operator(), reason)
        holds.put(app.manifest, hold)
        return hold
