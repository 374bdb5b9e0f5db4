"""A shard lists its documents in key order, byte by byte, whatever the manifest database's locale.

A shard no event has touched is read from its packs and sorted in Python; a touched one is read from its rows
in the database's key order. On a PostgreSQL database whose default collation follows a language's rules,
the two orders would differ: the manifest's names compare byte by byte there too (COLLATE "C").
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot import naming
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.settings import Settings
from tests import factories
from tests.conftest import fresh_pg_database
from tests.factories import HOST

# Byte order: "B" < "Z" < "a" < "a-b" < "a_b" < "ab" < "c" < "é"; an English collation puts "a" before "B",
# "é" beside "e", and weighs "-" and "_" below the letters.
KEYS = ["a", "B", "c", "é", "Z", "a-b", "a_b", "ab", "e", "A"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    for url in fresh_pg_database("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"):
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            base_url="http://127.0.0.1:8080/sitemaps/",
            allowed_hosts=(HOST,),
            workers=1,
        )
        a = App(settings)
        try:
            yield a
        finally:
            a.close()


def doc(key: str, day: int = 1) -> dict[str, object]:
    return factories.doc(key, None, day=day, loc=f"https://{HOST}/books/{key.encode().hex()}")  # plain ASCII


def shard_locs(app: App, generation: str) -> list[str]:
    path = app.store.path(generation, naming.shard_name("books", 1))  # type: ignore[attr-defined]
    return re.findall(r"<loc>(.*?)</loc>", gzip.decompress(Path(path).read_bytes()).decode())


def test_a_shard_keeps_byte_order_from_packs_and_from_rows(app: App) -> None:
    with app.manifest.read() as conn:  # the database's own order is not byte order: else this test proves nothing
        assert conn.execute(text("SELECT 'a' < 'B'")).scalar() is True
    Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 1).rebuild(
        row_chunks("src", [doc(k) for k in KEYS])
    )
    from_packs = shard_locs(app, app.publisher.publish(full=True).generation or "")
    app.applier.apply_raw([("t", orjson.dumps({"op": "upsert", **doc("c", day=2)}))])
    touched = app.publisher.publish()
    assert touched.rendered == 1
    from_rows = shard_locs(app, touched.generation or "")
    expected = [doc(k)["loc"] for k in sorted(KEYS, key=lambda k: k.encode())]
    assert from_packs == expected
    assert from_rows == expected
