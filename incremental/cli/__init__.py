"""The `sitemaps` command: one module per subcommand, imported only when that subcommand runs.

Lazy loading keeps a one-shot command such as `publish` from paying for the Kafka, Kubernetes and S3
clients' imports (about a second) when it needs none of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys

import click

from sitemap_keeper import DISTRIBUTION
from sitemap_keeper.incremental.cli.errors import handled

# command name -> module under incremental.cli (each defines `command`)
COMMANDS = {
    "rebuild": "rebuild", "apply": "apply", "publish": "publish", "status": "status", "rollback": "rollback",
    "prune": "prune", "serve": "serve", "demo": "demo", "dead-letters": "dead_letters", "verify": "verify",
    "diff": "diff", "robots": "robots", "run": "run", "replay": "replay",
    "hold": "hold", "resume": "resume",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"sitemap_keeper.incremental.cli.{module}").command
        return command


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`sitemaps --version`: the distribution's version and whether the C fast path (snapshot/_fastrow.c) loads."""
    if not value or ctx.resilient_parsing:
        return
    try:
        importlib.import_module("sitemap_keeper.snapshot._fastrow")
        fast_path = "C fast path loaded"
    except ImportError:
        fast_path = "C fast path not built (the Python code renders, several times slower)"
    click.echo(f"sitemaps ({DISTRIBUTION}) {importlib.metadata.version(DISTRIBUTION)}, {fast_path}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and whether the C fast path is loaded, then exit.")
def cli() -> None:
    """Always-fresh, never half-published sitemaps for very large sites."""


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("SITEMAPS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with handled():
        cli.main(prog_name="sitemaps", standalone_mode=True)
