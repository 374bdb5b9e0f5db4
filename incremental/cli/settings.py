"""`sitemaps settings [GROUP]`: the settings the commands share, each described once, by group, and the global
ones (`sitemaps --log-level ... COMMAND`).

A command's --help names the settings it reads (incremental/cli/options.py); this is where they are described:
option, environment variable, default and meaning. A command's own options are described by its --help.
"""

from __future__ import annotations

import click

from sitemap_keeper.incremental.cli import COMMANDS, cli
from sitemap_keeper.incremental.cli.options import GROUPS, Group, Setting, described, write_names

GLOBAL = "global"  # the options of `sitemaps` itself
# What each group of incremental/cli/options.py is about: the heading of its section.
ABOUT = {
    "manifest": "where the shard manifest lives",
    "site": "the site the documents belong to",
    "limits": "shard and index sizes, the shrink guard, worker processes",
    "store": "where generations are stored: a local directory or S3",
    "router": "what points the world at the live generation: a symlink, an Ingress or an HTTPRoute",
    "indexnow": "announcing the changed URLs to IndexNow after a switch",
    "prune": "how many published generations stay",
    "kafka": "the change feed's brokers and topics",
    "service": "timers, probes and leader election of the service",
}


@click.command("settings")
@click.argument("group", required=False, metavar="[GROUP]", type=click.Choice([*(g.name for g in GROUPS), GLOBAL]))
@click.pass_context
def command(ctx: click.Context, group: str | None) -> None:
    """Describe the settings the commands share (all, or one GROUP's): option, environment variable, default.

    A command's --help names the settings it reads, by GROUP (manifest, site, limits, store, router, indexnow,
    prune, kafka, service); the global ones (logs, --debug, progress) go before any command.

    \b
    Examples:
      sitemaps settings
      sitemaps settings store
    """
    formatter = ctx.make_formatter()
    readers = _readers(ctx)
    for shown in GROUPS:
        if group in (None, shown.name):
            _write_group(ctx, formatter, shown, readers.get(shown.name, []))
    if group in (None, GLOBAL):
        with formatter.section("global settings (before the command: sitemaps --log-level debug COMMAND)"):
            formatter.write_dl(
                [record for p in cli.params if p.name not in ("version", "help") and (record := p.get_help_record(ctx))]
            )
    click.echo(formatter.getvalue().rstrip("\n"))


def _readers(ctx: click.Context) -> dict[str, list[str]]:
    """Group name -> the commands whose --help names that group's settings (each command module is imported)."""
    readers: dict[str, list[str]] = {}
    for name in COMMANDS:
        sub = cli.get_command(ctx, name)
        for group in dict.fromkeys(p.group for p in (sub.params if sub else []) if isinstance(p, Setting)):
            readers.setdefault(group, []).append(name)
    return readers


def _write_group(ctx: click.Context, formatter: click.HelpFormatter, group: Group, readers: list[str]) -> None:
    about = ABOUT.get(group.name)
    with formatter.section(f"{group.name} settings" + (f" ({about})" if about else "")):
        write_names(formatter, {"read by": readers or ["no command"]})
        formatter.write_dl(
            [record for opt, field, kw in group.options if (record := described(opt, field, kw).get_help_record(ctx))]
        )
