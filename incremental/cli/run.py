from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.cdc import format_options, use_format
from sitemap_keeper.incremental.cli.options import extra_fields_option, option, with_app
from sitemap_keeper.incremental.service import BATCH_SIZE, open_service, tune_gc

batch_size_option = option("--batch-size", type=int, default=BATCH_SIZE, help="Most events in one transaction.")


@click.command("run")
@option(
    "--follow",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Tail this JSON-lines file for events instead of Kafka: no servers needed.",
)
@batch_size_option
@format_options
@with_app
@extra_fields_option
def command(app: App, follow: Path | None, batch_size: int, event_format: str, mapping: Path | None) -> None:
    """Keep the sitemaps fresh: apply events exactly once, publish and prune on timers, serve probes.

    \b
    Examples:
      sitemaps run --follow events.jsonl
      SITEMAPS_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 SITEMAPS_DATABASE_URL=postgresql+psycopg://db/sitemaps sitemaps run
      sitemaps run --format debezium --mapping mapping.yaml
    """
    use_format(app, event_format, mapping)
    if follow is None and not app.settings.kafka_bootstrap_servers:
        raise click.UsageError("give --follow FILE, or Kafka brokers with SITEMAPS_KAFKA_BOOTSTRAP_SERVERS")
    service = open_service(app, follow, batch_size, stopping=stop_on_signals())
    tune_gc()
    counts = service.run(on_listen=announce(app))
    click.echo(f"stopped: {counts}")


def announce(app: App) -> Callable[[int], None]:
    """Say where the probes answer (tests and humans read the port from it)."""
    return lambda port: click.echo(f"probes and metrics at http://{app.settings.http_host}:{port}/metrics")


def stop_on_signals() -> threading.Event:
    """SIGTERM or Ctrl-C set it: the batch in hand is finished and committed, then the command returns."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: stopping.set())
    return stopping
