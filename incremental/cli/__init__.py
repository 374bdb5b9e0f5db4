"""The `sitemaps` command: one module per subcommand."""

from __future__ import annotations

import logging
import os
import sys

import click

from incremental.cli import (
    apply,
    dead_letters,
    demo,
    diff,
    prune,
    publish,
    rebuild,
    replay,
    robots,
    rollback,
    run,
    serve,
    status,
    verify,
)
from incremental.cli.errors import handled


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="sitemaps")
def cli() -> None:
    """Always-fresh, never half-published sitemaps for very large sites."""


for module in (rebuild, apply, publish, status, rollback, prune, serve, demo, dead_letters, verify, diff,
               robots, run, replay):
    cli.add_command(module.command)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("SITEMAPS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with handled():
        cli.main(prog_name="sitemaps", standalone_mode=True)
