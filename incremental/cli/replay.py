from __future__ import annotations

from pathlib import Path

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.cdc import format_options, use_format
from sitemap_keeper.incremental.cli.options import extra_fields_option, option, with_app
from sitemap_keeper.incremental.cli.progress import Progress
from sitemap_keeper.incremental.cli.run import announce, batch_size_option, stop_on_signals
from sitemap_keeper.incremental.replay import Replay, ReplayError, parse_since
from sitemap_keeper.incremental.service import open_service, tune_gc


@click.command("replay")
@option(
    "--since",
    help="Start at the first event of this time (ISO 8601, UTC by default, or epoch seconds) "
    "instead of the beginning of the topic.",
)
@option(
    "--keep-manifest",
    is_flag=True,
    help="Apply on top of the manifest instead of an empty one (say, one restored from a backup taken at --since).",
)
@click.option(
    "--run/--exit",
    "then_run",
    default=True,
    show_default=True,
    help="Go on as `sitemaps run` once the full generation is published.",
)
@batch_size_option
@format_options
@with_app
@extra_fields_option
def command(
    app: App,
    since: str | None,
    keep_manifest: bool,
    then_run: bool,
    batch_size: int,
    event_format: str,
    mapping: Path | None,
) -> None:
    """Rebuild the manifest from the Kafka topic, publish a full generation, and go on from there.

    \b
    Examples:
      sitemaps replay --kafka-bootstrap-servers kafka:9092 --exit
      sitemaps replay --since 2024-05-17T00:00:00 --keep-manifest
    """
    use_format(app, event_format, mapping)
    if not app.settings.kafka_bootstrap_servers:
        raise click.UsageError("replay reads Kafka: set SITEMAPS_KAFKA_BOOTSTRAP_SERVERS")
    stopping = stop_on_signals()
    tune_gc()
    replay = Replay(app, batch_size, stopping)
    try:
        with Progress("replaying (events)") as bar, Progress("publishing (shards)") as publishing:
            replay.on_progress = bar.to
            app.publisher.on_progress = publishing.to  # the full publish once caught up
            counts, result = replay.run(parse_since(since) if since else None, keep_manifest, on_listen=announce(app))
            app.publisher.on_progress = None  # the service's timer publishes, after it, say nothing
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"replayed: {counts}")
    if result is None:
        return
    click.echo(result.message)
    if then_run:
        click.echo(f"stopped: {open_service(app, None, batch_size, stopping).run(on_listen=announce(app))}")
