from __future__ import annotations

from urllib.parse import urlsplit

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, ROUTER, SITE, with_reader
from sitemap_keeper.snapshot.status import sitemap_lines


@click.command("robots")
@with_reader(MANIFEST, SITE, ROUTER)
def command(app: App) -> None:
    """A robots.txt fragment listing the live generation's sitemaps, to paste into each site's robots.txt.

    \b
    Examples:
      sitemaps robots
      sitemaps robots --base-url https://example.org/sitemaps/ >> robots.txt
    """
    live = app.router.current()
    lines = sitemap_lines(app.manifest, live, app.settings.base_url)
    if not lines:
        raise click.ClickException(
            "nothing is published yet"
            if live is None
            else f"the live generation {live} is not recorded in this manifest"
        )
    click.echo(f"# Sitemaps of the live generation ({live}); they change only if the root index is split.")
    sitemap_host = urlsplit(app.settings.base_url).hostname
    others = sorted(h for h in app.settings.rules.allowed_hosts if h != sitemap_host)
    if others:
        # sitemaps.org: a sitemap may list URLs of another host when that host's robots.txt points at it.
        click.echo(
            f"# Serve these lines in the robots.txt of {', '.join(others)}: that lets sitemaps on "
            f"{sitemap_host} list their URLs."
        )
    for line in lines:
        click.echo(line)
