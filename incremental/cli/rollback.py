from __future__ import annotations

import time

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.hold import by_option, reason_option
from sitemap_keeper.incremental.cli.options import LIMITS, MANIFEST, ROUTER, STORE, with_app
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.snapshot.hold import Hold, operator
from sitemap_keeper.snapshot.rollback import rollback


@click.command("rollback")
@click.argument("generation", required=False)
@click.option(
    "--hold/--no-hold",
    default=True,
    show_default=True,
    help="Hold the site at GENERATION: no publish switches it back until `sitemaps resume`.",
)
@reason_option
@by_option
@json_option
@with_app(MANIFEST, LIMITS, STORE, ROUTER)
def command(app: App, generation: str | None, hold: bool, reason: str | None, by: str | None, as_json: bool) -> None:
    """Switch the router back to GENERATION (default: the newest retained one before the live one), and hold
    the site there until `sitemaps resume` (unless --no-hold).

    \b
    Examples:
      sitemaps rollback
      sitemaps rollback sitemaps-20240517-100000-000-0000 --reason "bad import upstream"
    """
    held = Hold(None, time.time(), by or operator(), reason or "rolled back") if hold else None
    previous, target = rollback(app.manifest, app.store, app.router, generation, app.settings.limits, held)
    if held is None:
        message = f"rolled back from {previous} to {target}; the next publish puts the manifest's state live"
    else:
        message = (
            f"rolled back from {previous} to {target} and held there: publishes switch nothing until `sitemaps resume`"
        )
    echo_result(as_json, message, {"from": previous, "to": target, "held": held is not None}, "rolled_back")
