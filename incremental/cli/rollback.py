from __future__ import annotations

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import LIMITS, MANIFEST, ROUTER, STORE, with_app
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.snapshot.rollback import rollback


@click.command("rollback")
@click.argument("generation", required=False)
@json_option
@with_app(MANIFEST, LIMITS, STORE, ROUTER)
def command(app: App, generation: str | None, as_json: bool) -> None:
    """Switch the router back to GENERATION (default: the newest retained one before the live one).

    \b
    Examples:
      sitemaps rollback
      sitemaps rollback sitemaps-20240517-100000-000-0000
    """
    previous, target = rollback(app.manifest, app.store, app.router, generation, app.settings.limits)
    echo_result(as_json, f"rolled back from {previous} to {target}", {"from": previous, "to": target},
                "rolled_back")
