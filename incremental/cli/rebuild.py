from __future__ import annotations

import os
import time
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.cdc import mapping_option, read_mapping
from sitemap_keeper.incremental.cli.options import PUBLISHING, extra_fields_option, option, with_app
from sitemap_keeper.incremental.cli.progress import Progress
from sitemap_keeper.incremental.cli.results import echo_result, json_option
from sitemap_keeper.incremental.logs import fields
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.rebuild_input import jsonl_chunks, mapping_rows, sql_rows


@click.command("rebuild")
@option("--source", type=click.Path(allow_dash=True), help="A JSON-lines file of documents (`-` for stdin).")
@option("--source-sql", help="A query whose columns are document fields (section, key, loc, lastmod, ...).")
@option("--source-database-url", help="SQLAlchemy URL of the application database the query runs on.")
@option("--publish/--no-publish", default=True, help="Publish a fresh generation after loading.")
@mapping_option
@json_option
@with_app(*PUBLISHING)
@extra_fields_option
def command(
    app: App,
    source: str | None,
    source_sql: str | None,
    source_database_url: str | None,
    publish: bool,
    mapping: Path | None,
    as_json: bool,
) -> None:
    """Full snapshot rebuild: replace the manifest from a source and publish a fresh generation.

    \b
    Examples:
      sitemaps rebuild --source catalog.jsonl
      sitemaps rebuild --source-sql "SELECT 'books' AS section, id AS key, url AS loc, updated AS lastmod FROM books" \\
        --source-database-url postgresql+psycopg://app@db/shop
      sitemaps rebuild --mapping mapping.yaml --source-database-url postgresql+psycopg://app@db/shop
    """
    if sum(x is not None for x in (source, source_sql, mapping)) != 1:
        raise click.UsageError("give exactly one of --source FILE, --source-sql QUERY and --mapping FILE")
    if source is None and not source_database_url:
        raise click.UsageError(f"{'--source-sql' if source_sql else '--mapping'} needs --source-database-url")
    started = time.monotonic()
    rebuilder = Rebuilder(
        app.manifest, app.settings.rules, app.settings.limits, app.settings.workers, app.settings.max_shrink
    )
    if source is not None:
        length = os.path.getsize(source) if source != "-" else None
        with Progress("loading (bytes)", length) as bar:
            counts = rebuilder.rebuild(jsonl_chunks(source, on_bytes=bar.update))
    elif mapping is not None:
        assert source_database_url is not None
        rows = mapping_rows(source_database_url, read_mapping(mapping))
        try:
            with Progress("loading (documents)") as bar:
                counts = rebuilder.rebuild(row_chunks("mapping", rows), progress=bar.update)
        except SQLAlchemyError as exc:  # the mapping's query on the application database (a missing table, ...)
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise click.ClickException(f"the mapping's query failed on the source database: {reason}") from None
    else:
        assert source_sql is not None and source_database_url is not None
        with Progress("loading (documents)") as bar:
            counts = rebuilder.rebuild(
                row_chunks("sql", sql_rows(source_database_url, source_sql, app.settings.rules.ignore_extra_fields)),
                progress=bar.update,
            )
    loaded = time.monotonic() - started
    out: dict[str, object] = {**fields(counts), "load_seconds": round(loaded, 3), "published": None}
    if not as_json:
        click.echo(f"manifest rebuilt: {counts} in {loaded:.2f}s")
    if publish:
        with Progress("publishing (shards)") as bar:
            app.publisher.on_progress = bar.to
            result = app.publisher.publish(full=True)
        total = time.monotonic() - started
        out.update(published={**fields(result), "message": result.message}, seconds=round(total, 3))
        if not as_json:
            click.echo(result.message)
        echo_result(
            as_json, f"rebuild took {total:.2f}s end to end ({counts.applied / total:,.0f} URLs/s)", out, "rebuilt"
        )
    else:
        echo_result(as_json, None, out, "rebuilt")
