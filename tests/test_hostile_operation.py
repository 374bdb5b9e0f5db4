"""Operating the tool the way real teams do (issue 22, defects 4 to 8): each test failed on the code before its fix.

End to end in-process on SQLite and PostgreSQL, what is served read back over HTTP and XSD-validated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.settings import Settings
from tests.support import Model
from tests.test_publish import HOST, doc, served


def make_app(tmp_path: Path, database_url: str, **changes: object) -> App:
    fields: dict[str, object] = {"data_dir": tmp_path / "data", "database_url": database_url,
                                 "base_url": "http://127.0.0.1:8080/sitemaps/", "allowed_hosts": (HOST,),
                                 "max_urls": 100, "workers": 2, **changes}
    return App(Settings(**fields))  # type: ignore[arg-type]


@pytest.fixture
def small_shards(tmp_path: Path, database_url: str) -> Iterator[App]:
    """Shards of at most 4,096 bytes (SITEMAPS_MAX_BYTES lowered as far as it goes)."""
    a = make_app(tmp_path, database_url, max_bytes=4096)
    yield a
    a.close()


def apply(app: App, model: Model, events: list[dict[str, object]]) -> None:
    counts = app.applier.apply_raw([(f"test:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
    accepted = [e for e in events if not e.get("_refused")]
    for e in accepted:
        model.event(e)
    assert counts.rejected == len(events) - len(accepted), counts


def too_big(i: int, version: int = 1) -> dict[str, object]:
    """A valid document whose <url> is about 6 KB, over a 4,096-byte shard: the C fast path's shape."""
    images = [{"loc": f"https://{HOST}/i/{n}/" + "a" * 2000} for n in range(3)]
    return {**doc(i, version=version), "images": images, "_refused": True}


# -- 5. a document too big for the shard byte limit ---------------------------------------------------------

def test_a_document_no_shard_can_hold_is_dead_lettered_and_publishes_go_on(small_shards: App) -> None:
    app, model = small_shards, Model()
    docs = [doc(i) for i in range(20)]
    counts = Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 2).rebuild(
        row_chunks("src", [*docs[:10], too_big(100), *docs[10:]]))
    assert (counts.applied, counts.rejected) == (20, 1)
    for d in docs:
        model.event(d)
    assert app.publisher.publish(full=True).generation is not None
    assert served(app) == model.expected()

    apply(app, model, [too_big(101), doc(3, version=2, day=9), too_big(5, version=2)])
    assert app.publisher.publish().generation is not None  # used to fail on the shard the big one went to
    assert served(app) == model.expected()
    apply(app, model, [doc(200)])
    assert app.publisher.publish().generation is not None
    assert served(app) == model.expected()
    reasons = [letter.reason for letter in app.manifest.dead_letters()]
    assert len(reasons) == 3 and all("more than one shard can hold" in r for r in reasons), reasons
