from __future__ import annotations

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, PRUNE, ROUTER, STORE, option, with_app
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.incremental.logs import fields
from sitemap_keeper.snapshot.prune import GRACE_SECONDS, prune


@click.command("prune")
@option(
    "--grace",
    type=float,
    default=GRACE_SECONDS,
    help="Seconds before a generation that never went live counts as abandoned.",
)
@json_option
@with_app(MANIFEST, STORE, ROUTER, PRUNE)
def command(app: App, grace: float, as_json: bool) -> None:
    """Delete generations beyond --keep, and abandoned half-built ones; never the live one, nor another site's.

    \b
    Examples:
      sitemaps prune
      sitemaps prune --keep 5 --json
    """
    result = prune(app.manifest, app.store, app.router, keep=app.settings.keep, grace=grace)
    others = (
        f"; left alone {len(result.foreign)} not this site's: {', '.join(map(str, result.foreign))}"
        if result.foreign
        else ""
    )
    echo_result(
        as_json,
        f"kept {len(result.kept)} ({', '.join(result.kept) or 'none'}); "
        f"deleted {len(result.deleted)}; abandoned deleted {len(result.abandoned)}{others}",
        fields(result),
        "pruned",
    )
