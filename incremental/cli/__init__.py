"""The `sitemaps` command: one module per subcommand, imported only when that subcommand runs.

Lazy loading keeps a one-shot command such as `publish` from paying for the Kafka, Kubernetes and S3
clients' imports (about a second) when it needs none of them.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from incremental.cli.errors import handled

# command name -> module under incremental.cli (each defines `command`)
COMMANDS = {
    "rebuild": "rebuild", "apply": "apply", "publish": "publish", "status": "status", "rollback": "rollback",
    "prune": "prune", "serve": "serve", "demo": "demo", "dead-letters": "dead_letters", "verify": "verify",
    "diff": "diff", "robots": "robots", "run": "run", "replay": "replay",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"incremental.cli.{module}").command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="sitemaps")
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
