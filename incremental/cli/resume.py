from __future__ import annotations

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, with_app
from sitemap_keeper.snapshot import hold as holds


@click.command("resume")
@with_app(MANIFEST)
def command(app: App) -> None:
    """Release a hold (set by `hold` or `rollback`): the next publish puts the manifest's state live.

    \b
    Examples:
      sitemaps resume
      sitemaps resume && sitemaps publish
    """
    was = holds.release(app.manifest)
    if was is None:
        click.echo("not held: nothing to resume")
        return
    click.echo(f"resumed: the site was {was.describe()}; the next publish puts the manifest's state live")
