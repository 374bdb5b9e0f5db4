from __future__ import annotations

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import PUBLISHING, with_app
from sitemap_keeper.incremental.cli.progress import Progress
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.incremental.logs import fields


@click.command("publish")
@click.option("--full", is_flag=True, help="Render every shard, not only the dirty ones.")
@json_option
@with_app(*PUBLISHING)
def command(app: App, full: bool, as_json: bool) -> None:
    """Publish the dirty shards as a new generation and switch the router to it.

    \b
    Examples:
      sitemaps publish
      sitemaps publish --full --json
    """
    with Progress("publishing (shards)") as bar:
        app.publisher.on_progress = bar.to
        result = app.publisher.publish(full=full)
    echo_result(as_json, result.message, {**fields(result), "message": result.message}, "published")
