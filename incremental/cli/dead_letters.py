from __future__ import annotations

import json
import time

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, with_reader


@click.command("dead-letters")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@with_reader(MANIFEST)
def command(app: App, limit: int, as_json: bool) -> None:
    """Input that was refused, with the reason and the raw text.

    \b
    Examples:
      sitemaps dead-letters --limit 20
      sitemaps dead-letters --json | jq -r .reason | sort | uniq -c
    """
    for d in app.manifest.dead_letters.all(limit):
        raw = d.raw.decode("utf-8", "backslashreplace")
        if as_json:
            click.echo(
                json.dumps({"id": d.id, "created_at": d.created_at, "source": d.source, "reason": d.reason, "raw": raw})
            )
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.created_at))
            click.echo(f"#{d.id} {when} {d.source}: {d.reason}\n    {raw[:200]}")
