from __future__ import annotations

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import LIMITS, MANIFEST, ROUTER, STORE, with_reader
from sitemap_keeper.incremental.cli.progress import Progress
from sitemap_keeper.snapshot.verify import verify_generation


@click.command("verify")
@click.argument("generation", required=False)
@click.option(
    "--deep/--shallow", default=True, show_default=True, help="Also read back, decompress and parse every file."
)
@with_reader(MANIFEST, LIMITS, STORE, ROUTER)
def command(app: App, generation: str | None, deep: bool) -> None:
    """Check a generation (default: the live one) against what was recorded when it was published.

    \b
    Examples:
      sitemaps verify
      sitemaps verify --shallow sitemaps-20240517-100000-000-0000
    """
    gen_id = generation or app.router.current()
    if gen_id is None:
        raise click.ClickException("nothing is published yet")
    files = app.manifest.generations.files(gen_id)
    if not files:
        raise click.ClickException(f"generation {gen_id} is not recorded in this manifest")
    with Progress("verifying (bytes)", sum(f.size for f in files.values())) as bar:
        verify_generation(app.store, gen_id, files, app.settings.limits, deep=deep, on_file=bar.update)
    click.echo(f"generation {gen_id}: {len(files)} files verified")
