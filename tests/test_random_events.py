"""Random sequences of events (hypothesis): after each publish the served site equals the ground truth."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.serve import make_server, serve_in_thread
from sitemap_keeper.snapshot.settings import Settings
from tests.conftest import fresh_pg_database
from tests.support import Model, http_fetch, read_site

HOST = "librer.io"
SECTIONS = ("books", "authors", "x-y_1")

upsert = st.fixed_dictionaries(
    {
        "op": st.just("upsert"),
        "section": st.sampled_from(SECTIONS),
        "key": st.integers(0, 40).map(str),
        "version": st.one_of(st.none(), st.integers(1, 30)),
        "lastmod": st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(
            lambda d: d.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        ),
        "slug": st.text(alphabet="abcxyz-é&'<", min_size=1, max_size=12),
    }
)
delete = st.fixed_dictionaries(
    {
        "op": st.just("delete"),
        "section": st.sampled_from(SECTIONS),
        "key": st.integers(0, 40).map(str),
        "version": st.one_of(st.none(), st.integers(1, 30)),
    }
)
# A batch is applied in one transaction; a publish follows each batch.
batches = st.lists(st.lists(st.one_of(upsert, upsert, delete), min_size=1, max_size=25), min_size=1, max_size=6)


def as_event(e: dict[str, object]) -> dict[str, object]:
    if e["op"] == "upsert":
        # The URL changes with the slug: a document's URL may change while its key stays.
        slug = e.pop("slug")
        e = {**e, "loc": f"https://{HOST}/{e['section']}/{e['key']}/{slug}"}
    return {k: v for k, v in e.items() if v is not None}


def check(database_url: str, data_dir: Path, script: list[list[dict[str, object]]]) -> None:
    app = App(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            allowed_hosts=(HOST,),
            max_urls=7,
            max_bytes=4096,
            max_index_entries=5,
            workers=1,
        )
    )
    server = make_server(app.store, app.router, app.settings.base_path, "127.0.0.1", 0)
    serve_in_thread(server)
    base = f"http://127.0.0.1:{server.server_port}{app.settings.base_path}"
    model = Model()
    try:
        for batch in script:
            events = [as_event(dict(e)) for e in batch]
            app.applier.apply_raw([(f"h:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
            for e in events:
                model.event(e)
            expected = model.expected()
            if not expected:
                continue  # an empty site is never published
            app.publisher.publish()
            roots = tuple(line.rsplit("/", 1)[1] for line in _roots(app))
            site = read_site(http_fetch(base), app.settings.base_url, roots)
            # URL for URL, with the right lastmod; the percent-encoded form of a non-ASCII slug.
            assert site.urls == {_iri(k): v for k, v in expected.items()}
    finally:
        server.shutdown()
        server.server_close()
        app.close()


def _roots(app: App) -> list[str]:
    from sitemap_keeper.snapshot.status import sitemap_lines

    return sitemap_lines(app.manifest, app.router.current(), app.settings.base_url)


def _iri(url: str) -> str:
    # RFC 3986: everything but unreserved and reserved characters (and %) is percent-encoded.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_random_events_sqlite(script: list[list[dict[str, object]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check(f"sqlite:///{tmp}/m.db", Path(tmp) / "data", script)


@settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_random_events_postgresql(script: list[list[dict[str, object]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for url in fresh_pg_database():
            check(url, Path(tmp) / "data", script)
