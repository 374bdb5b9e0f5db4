"""News window benchmark: the publishes a news site's day is made of, in process, with a controlled clock.

    python bench/bench_news.py --articles 20000 [--database sqlite|postgresql]

A section of `--articles` news documents, one published every 30 seconds before the clock's start, goes in
through the apply path (the window holds the last two days': 5,760); then, each timed: the first publish, a
publish after one article changed, a publish a day later (half of the window aged out, no event), and a publish
with nothing due.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import database
from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.publish import PublishResult
from sitemap_keeper.snapshot.settings import Settings

HOST = "news.example"
START = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SPACING = 30  # seconds between two articles' publication


def article(i: int, version: int = 1) -> bytes:
    published = START - timedelta(seconds=SPACING * i)
    return orjson.dumps(
        {
            "section": "world",
            "key": str(i),
            "loc": f"https://{HOST}/world/{i}",
            "version": version,
            "news": {
                "publication": {"name": "The Example Times", "language": "en"},
                "publication_date": published.isoformat(),
                "title": f"Story {i} v{version}",
            },
        }
    )


def timed(what: str, app: App) -> PublishResult:
    started = time.perf_counter()
    result = app.publisher.publish()
    print(f"{what:<32} {time.perf_counter() - started:7.3f}s  {result.message}")
    return result


def run(kind: str, articles: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-news-") as tmp, database(kind, Path(tmp)) as url:
        app = App(
            Settings(
                data_dir=Path(tmp) / "data",
                database_url=url,
                base_url="http://127.0.0.1/s/",
                allowed_hosts=(HOST,),
                workers=0,
            )
        )
        now = [START.timestamp()]
        app.publisher.clock = lambda: now[0]
        started = time.perf_counter()
        app.applier.apply_raw([("bench", article(i)) for i in range(articles)])
        print(f"{kind}: apply {articles:,} news documents {time.perf_counter() - started:7.3f}s")
        timed("first publish", app)
        app.applier.apply_raw([("bench", article(100, version=2))])  # in the window: its news file changes
        timed("one article changed", app)
        now[0] += 86400  # a day later: the older half of the window's articles turn two days old
        timed("a day later, no event", app)
        timed("nothing due", app)
        app.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=20_000)
    ap.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = ap.parse_args()
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        run(kind, args.articles)


if __name__ == "__main__":
    main()
