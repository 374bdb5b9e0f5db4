from __future__ import annotations

import json

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, ROUTER, SITE, STORE, with_reader
from sitemap_keeper.snapshot.hold import Hold
from sitemap_keeper.snapshot.status import status


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_reader(MANIFEST, SITE, STORE, ROUTER)
def command(app: App, as_json: bool) -> None:
    """The live generation, retained generations, sections, dirty shards, dead letters, robots.txt lines.

    \b
    Examples:
      sitemaps status
      sitemaps status --json | jq .live_generation
    """
    info = status(app.manifest, app.store, app.router, app.settings.base_url)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"store:            {info['store']}")
    click.echo(f"router:           {info['router']}")
    click.echo(f"site:             {info['site']} (the identity its generations are stamped with)")
    click.echo(f"live generation:  {info['live_generation'] or '(none yet)'}")
    if info["hold"]:
        h = info["hold"]
        click.echo(
            f"hold:             {Hold(h['generation'], h['since'], h['by'], h['reason']).describe()}; "
            "publishes switch nothing until `sitemaps resume`"
        )
    click.echo(f"retained:         {', '.join(info['retained_generations']) or '(none)'}")
    click.echo(f"URLs:             {info['urls']} in {info['shards']} shards")
    for name, s in info["sections"].items():
        click.echo(f"  {name:<20} {s['urls']:>12} URLs {s['shards']:>6} shards")
    click.echo(f"dirty shards:     {info['dirty_shards']}")
    click.echo(f"dead letters:     {info['dead_letters']}")
    d = info["last_diff"]
    if d:
        click.echo(
            f"last diff:        +{d['added']} -{d['removed']} ~{d['changed']} URLs against {d['base'] or '(nothing)'}"
        )
    for o in info["indexnow"]:
        codes = ", ".join(f"{code}x{n}" for code, n in o["statuses"].items()) or "nothing sent"
        click.echo(
            f"indexnow:         {o['endpoint']}: {o['submitted']} of {o['urls']} URLs of "
            f"{o['generation_id']} accepted in {o['batches']} batches ({codes})"
            f"{'; ' + o['message'] if o['message'] else ''}"
        )
    for note in info["notes"]:
        click.echo(f"note: {note}")
    if info["sitemap_lines"]:
        click.echo("robots.txt:")
        for line in info["sitemap_lines"]:
            click.echo(f"  {line}")
