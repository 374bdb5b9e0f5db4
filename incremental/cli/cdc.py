"""The options that say what events look like: `--format` (native or debezium) and `--mapping` (run, apply,
replay; rebuild takes `--mapping` alone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import option_default
from sitemap_keeper.snapshot.mapping import Mapping, MappingError, load_mapping

F = TypeVar("F", bound=Callable[..., Any])

mapping_option = click.option(
    "--mapping",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="SITEMAPS_MAPPING",
    show_envvar=True,
    help="Mapping file (YAML): tables to sections, docs/cdc.md.",
)


def format_options(fn: F) -> F:
    """--format (SITEMAPS_EVENT_FORMAT) and --mapping (SITEMAPS_MAPPING)."""
    fn = click.option(
        "--format",
        "event_format",
        type=click.Choice(["native", "debezium"]),
        default=option_default("event_format"),
        envvar="SITEMAPS_EVENT_FORMAT",
        show_envvar=True,
        show_default=True,
        help="This tool's JSON events, or Debezium's (read by --mapping).",
    )(fn)
    return mapping_option(fn)


def read_mapping(path: Path) -> Mapping:
    """The mapping, checked now: a bad one stops the command with one line (exit status 2)."""
    try:
        return load_mapping(path)
    except MappingError as exc:
        raise click.UsageError(str(exc)) from None


def use_format(app: App, event_format: str, mapping: Path | None) -> None:
    """Check the format, its mapping and the topics before anything starts; make the app's applier read that
    format."""
    # Here, not at the top: `rebuild` imports this module and reads no Kafka; the client takes about 0.1 s to import.
    from sitemap_keeper.incremental.sources.kafka import topics_setting

    try:
        topics_setting(app.settings.kafka_topics)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if event_format == "debezium":
        if mapping is None:
            raise click.UsageError("--format debezium needs --mapping FILE (SITEMAPS_MAPPING)")
        read_mapping(mapping)
    app.settings = app.settings.replace(event_format=event_format, mapping=mapping)
