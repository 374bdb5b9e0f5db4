"""The news window's tables: `news_articles` (each document's article and the news shard it is in),
`news_shards` (each news shard's article count and revision) and `news_files` (when each news file of a
generation goes stale). What the window holds and how its files read is snapshot/news.py's; here are the reads
and writes it is made of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, Table, func, insert, select, text

from sitemap_keeper.snapshot.manifest.connection import KEYS_PER_QUERY
from sitemap_keeper.snapshot.manifest.schema import news_articles, news_files, news_shards

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.manifest import Manifest


def news_sections(conn: Connection) -> set[str]:
    """The sections with news shards."""
    return {s for (s,) in conn.execute(select(news_shards.c.section).distinct())}


def shards_of(conn: Connection, section: str, keys: Sequence[str]) -> dict[str, int]:
    """The news shard of each of these documents of `section` that has an article."""
    t = news_articles
    held: dict[str, int] = {}
    for i in range(0, len(keys), KEYS_PER_QUERY):
        held.update(
            {
                k: int(n)
                for k, n in conn.execute(
                    select(t.c.key, t.c.shard_no).where(
                        t.c.section == section, t.c.key.in_(keys[i : i + KEYS_PER_QUERY])
                    )
                )
            }
        )
    return held


def shard_counts(conn: Connection, section: str) -> dict[int, int]:
    """The article count of each news shard of `section`."""
    query = select(news_shards.c.shard_no, news_shards.c.article_count).where(news_shards.c.section == section)
    return {int(n): int(c) for n, c in conn.execute(query)}


def write_section(
    manifest: Manifest,
    conn: Connection,
    section: str,
    rows: list[tuple[Any, ...]],
    gone: Sequence[str],
    shards: Iterable[tuple[int, int, int]],
) -> None:
    """Of `section`: delete the articles of the `gone` keys, store `rows` (news_articles rows, in its columns'
    order: section, key, shard_no, loc, published, published_ts, xml) and set these news shards' (shard_no,
    article count, revision)."""
    t = news_articles
    for i in range(0, len(gone), KEYS_PER_QUERY):
        conn.execute(t.delete().where(t.c.section == section, t.c.key.in_(gone[i : i + KEYS_PER_QUERY])))
    manifest.bulk.upsert(conn, t, ("section", "key"), rows)
    manifest.bulk.upsert(
        conn, news_shards, ("section", "shard_no"), [(section, n, count, revision) for n, count, revision in shards]
    )


def revisions(conn: Connection) -> dict[tuple[str, int], int]:
    """Every news shard's revision, by (section, shard_no)."""
    return {
        (s, int(n)): int(r)
        for s, n, r in conn.execute(select(news_shards.c.section, news_shards.c.shard_no, news_shards.c.revision))
    }


def shards_with_articles_after(conn: Connection, cut: float) -> list[tuple[str, int]]:
    """(section, shard_no) of the news shards with an article published after `cut`, in order."""
    t = news_articles
    return [
        (s, int(n))
        for s, n in conn.execute(
            select(t.c.section, t.c.shard_no)
            .where(t.c.published_ts > cut)
            .group_by(t.c.section, t.c.shard_no)
            .order_by(t.c.section, t.c.shard_no)
        )
    ]


def shard_revision(conn: Connection, section: str, shard_no: int) -> int | None:
    value = conn.execute(
        select(news_shards.c.revision).where(news_shards.c.section == section, news_shards.c.shard_no == shard_no)
    ).scalar()
    return None if value is None else int(value)


def articles_after(conn: Connection, section: str, shard_no: int, cut: float) -> Sequence[Row[str, str, float]]:
    """The articles of a news shard published after `cut`, by key: rows of (xml, published, published_ts)."""
    t = news_articles
    return conn.execute(
        select(t.c.xml, t.c.published, t.c.published_ts)
        .where(t.c.section == section, t.c.shard_no == shard_no, t.c.published_ts > cut)
        .order_by(t.c.key)
    ).all()


def expiries_of(conn: Connection, gen_id: str) -> dict[str, float]:
    """When each news file of generation `gen_id` goes stale, by file name."""
    return {
        name: float(at)
        for name, at in conn.execute(
            select(news_files.c.name, news_files.c.expires_at).where(news_files.c.generation_id == gen_id)
        )
    }


def record_expiries(manifest: Manifest, gen_id: str, expiries: Mapping[str, float]) -> None:
    """Keep when each news file of generation `gen_id` goes stale (before the generation can go live)."""
    with manifest.write() as conn:
        conn.execute(news_files.delete().where(news_files.c.generation_id == gen_id))
        if expiries:
            conn.execute(
                news_files.insert(),
                [{"generation_id": gen_id, "name": name, "expires_at": at} for name, at in sorted(expiries.items())],
            )


def live_expiries(manifest: Manifest, gen_id: str) -> dict[str, float]:
    with manifest.engine.connect() as conn:
        return expiries_of(conn, gen_id)


def swap_in(conn: Connection, staging: Table, revision: int) -> None:
    """Replace the news window with a rebuild's articles (in its swap transaction); of a repeated key, the last
    article in source order stays. Every news shard gets `revision`."""
    conn.execute(news_articles.delete())
    conn.execute(news_shards.delete())
    last = (
        select(staging.c.section, staging.c.key, func.max(staging.c.seq).label("seq"))
        .group_by(staging.c.section, staging.c.key)
        .subquery()
    )
    kept = select(*[staging.c[c.name] for c in news_articles.c]).join_from(
        staging,
        last,
        (staging.c.section == last.c.section) & (staging.c.key == last.c.key) & (staging.c.seq == last.c.seq),
    )
    conn.execute(insert(news_articles).from_select([c.name for c in news_articles.c], kept))
    conn.execute(
        text(
            "INSERT INTO news_shards (section, shard_no, article_count, revision) "
            "SELECT section, shard_no, count(*), :r FROM news_articles GROUP BY section, shard_no"
        ),
        {"r": revision},
    )
