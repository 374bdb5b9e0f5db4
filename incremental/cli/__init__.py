"""The `sitemaps` command: one module per subcommand, imported only when that subcommand runs.

Lazy loading keeps a one-shot command such as `publish` from paying for the Kafka, Kubernetes and S3
clients' imports (about a second) when it needs none of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys

import click

from sitemap_keeper import DISTRIBUTION
from sitemap_keeper.incremental import logs
from sitemap_keeper.incremental.cli import progress
from sitemap_keeper.incremental.cli.errors import DEBUG_ENV, handled, set_debug

# command name -> module under incremental.cli (each defines `command`)
COMMANDS = {
    "rebuild": "rebuild",
    "apply": "apply",
    "publish": "publish",
    "status": "status",
    "rollback": "rollback",
    "prune": "prune",
    "serve": "serve",
    "demo": "demo",
    "dead-letters": "dead_letters",
    "verify": "verify",
    "diff": "diff",
    "robots": "robots",
    "run": "run",
    "replay": "replay",
    "hold": "hold",
    "resume": "resume",
    "settings": "settings",
}


# variables a release renamed -> their new names: a deployment still setting an old one is refused, not ignored
RENAMED_VARIABLES = {
    "SITEMAPS_INGRESS_NAMESPACE": "SITEMAPS_ROUTER_NAMESPACE",
    "SITEMAPS_INGRESS_LABEL": "SITEMAPS_ROUTER_LABEL",
}


def refuse_renamed_variables() -> None:
    old = sorted(name for name in RENAMED_VARIABLES if name in os.environ)
    if old:
        raise click.UsageError("; ".join(f"{name} is now {RENAMED_VARIABLES[name]}: rename it" for name in old))


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


EPILOG = """\b
Every option is also an environment variable: --database-url is SITEMAPS_DATABASE_URL, and so on.
`sitemaps COMMAND --help` lists the options that command reads; `sitemaps settings` describes the shared ones.
Exit status: 0 done, 1 failed at run time, 2 bad usage or settings (one line on standard error;
--debug adds the traceback)."""


@click.group(
    cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and whether the C fast path is loaded, then exit.",
)
@click.option(
    "--log-level",
    envvar="SITEMAPS_LOG_LEVEL",
    show_envvar=True,
    show_default=True,
    default="INFO",
    type=click.Choice(logs.LEVELS, case_sensitive=False),
    help="Least severe log records shown.",
)
@click.option(
    "--log-format",
    envvar="SITEMAPS_LOG_FORMAT",
    show_envvar=True,
    show_default=True,
    default="text",
    type=click.Choice(logs.FORMATS),
    help="Log lines on standard error: text, or one JSON object per line with the event's fields.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    show_envvar=True,
    help="Show the traceback of a failure, not only its one-line message.",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0, min_open=True),
    envvar="SITEMAPS_PROGRESS_INTERVAL",
    show_envvar=True,
    show_default=True,
    default=progress.LINE_EVERY,
    help="Seconds between progress lines when standard error is not a terminal (on one, a bar).",
)
def cli(log_level: str, log_format: str, debug: bool, progress_interval: float) -> None:
    """Always-fresh, never half-published sitemaps for very large sites.

    \b
    Examples:
      sitemaps rebuild --source catalog.jsonl && sitemaps serve
      sitemaps --log-format json run --follow events.jsonl
    """
    set_debug(debug)
    refuse_renamed_variables()
    logs.configure(log_level, log_format)
    progress.LINE_EVERY = progress_interval


def main() -> None:
    with handled():
        status = cli.main(prog_name="sitemaps", standalone_mode=False)  # click's own errors too: errors.py
    sys.exit(status if isinstance(status, int) else 0)
