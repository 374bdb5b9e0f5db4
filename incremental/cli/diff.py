from __future__ import annotations

import json
from collections.abc import Iterator

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, ROUTER, STORE, with_reader
from sitemap_keeper.snapshot import diff

MARK = {"added": "+", "removed": "-", "changed": "~"}


@click.command("diff")
@click.argument("old", required=False)
@click.argument("new", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, streamed as it is computed.")
@click.option("--summary", is_flag=True, help="Only the counts per section (recorded ones: no reading).")
@with_reader(MANIFEST, STORE, ROUTER)
def command(app: App, old: str | None, new: str | None, as_json: bool, summary: bool) -> None:
    """URLs added, removed, and with a new lastmod, from generation OLD to generation NEW.

    NEW defaults to the live generation, OLD to the generation NEW was published on. Changes are printed as
    they are found, the counts per section last.

    \b
    Examples:
      sitemaps diff --summary
      sitemaps diff --json OLD NEW > changes.json
    """
    new = new or app.router.current()
    if new is None:
        raise click.ClickException("nothing is published yet")
    if old is None:
        gen = app.manifest.generations.get(new)
        old = gen.base_id if gen else None
    try:
        counts = _recorded(app, old, new) if summary else None
        comparison = diff.compare(app.manifest, app.store, old, new, app.settings.workers) if counts is None else None
        if as_json:
            click.echo("{" + _members({"from": old, "to": new}), nl=False)
        else:
            click.echo(f"from {old or '(nothing)'} to {new}")
        if comparison is not None and summary:
            counts = comparison.summary()
        elif comparison is not None:
            counts = comparison.zero_counts()
            _changes(diff.tally(comparison.changes(), counts), as_json)
    except diff.DiffUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    assert counts is not None
    if as_json:
        click.echo(", " + _members(diff.as_json(counts)) + "}")
    else:
        _table(counts)


def _recorded(app: App, old: str | None, new: str) -> dict[str, diff.DiffCounts] | None:
    """The counts recorded when NEW went live, if OLD is what it was published on (even if since pruned)."""
    rec = diff.recorded(app.manifest, new)
    return rec.sections if rec is not None and rec.base_id == old else None


def _members(obj: dict[str, object]) -> str:
    """A JSON object's members without its braces: the document is written piece by piece."""
    return json.dumps(obj)[1:-1]


def _changes(changes: Iterator[diff.Change], as_json: bool) -> None:
    """One line per change, as it comes: a diff of millions of URLs is never held in memory."""
    if as_json:
        click.echo(', "changes": [', nl=False)
    sep = "\n"
    for c in changes:
        if as_json:
            click.echo(
                sep
                + json.dumps(
                    {
                        "change": c.kind,
                        "section": c.section,
                        "loc": c.loc,
                        "old_lastmod": c.old_lastmod,
                        "lastmod": c.new_lastmod,
                    }
                ),
                nl=False,
            )
            sep = ",\n"
        else:
            lastmod = {"added": c.new_lastmod, "removed": c.old_lastmod}.get(
                c.kind, f"{c.old_lastmod} -> {c.new_lastmod}"
            )
            click.echo(f"{MARK[c.kind]} {c.section} {c.loc} {lastmod or ''}".rstrip())
    if as_json:
        click.echo("\n]", nl=False)


def _table(counts: dict[str, diff.DiffCounts]) -> None:
    click.echo(f"  {'section':<24} {'added':>10} {'removed':>10} {'changed':>10}")
    for name, c in [*counts.items(), ("total", diff.total(counts))]:
        click.echo(f"  {name:<24} {c.added:>10} {c.removed:>10} {c.changed:>10}")
