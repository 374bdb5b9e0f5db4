"""Fields nobody reads are refused, naming the field, not dropped without a word: in events (apply, run) and
rebuild sources (JSON lines, an SQL query's columns), through the C fast path and the Python code alike;
`--extra-fields ignore` (SITEMAPS_EXTRA_FIELDS) accepts them for sources that carry more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from sitemap_keeper.snapshot.document import InvalidDocument, Rules
from sitemap_keeper.snapshot.render import document_row
from tests.factories import HOST, doc, write_jsonl
from tests.service_helpers import ServiceProcess, service_env
from tests.services.ports import wait_for
from tests.support import cli
from tests.test_fastrow import python_only

RULES = Rules(frozenset({HOST}))


def letters(env: dict[str, str]) -> list[dict[str, Any]]:
    out = cli("dead-letters", "--json", env=env).stdout
    return [json.loads(line) for line in out.splitlines()]


def urls(env: dict[str, str]) -> int:
    return int(json.loads(cli("status", "--json", env=env).stdout)["urls"])


IMAGE = {"loc": "https://cdn.x.io/i.jpg"}
ALTERNATE = {"hreflang": "de", "href": f"https://{HOST}/de"}


@pytest.mark.parametrize(
    ("obj", "reason", "known"),
    [
        (doc(1, lastMod="2024-06-01"), "unknown field 'lastMod'", doc(1)),
        (doc(1, podcast={"title": "t"}), "unknown field 'podcast'", doc(1)),
        (doc(1, podcast={}, zzz=1), "unknown field 'podcast' (and 1 more)", doc(1)),
        (doc(1, images=[{**IMAGE, "titel": "t"}]), "images[0]: unknown field 'titel'", doc(1, images=[IMAGE])),
        (
            doc(1, alternates=[{**ALTERNATE, "x": 1}]),
            "alternates[0]: unknown field 'x'",
            doc(1, alternates=[ALTERNATE]),
        ),
    ],
)
def test_both_paths_refuse_an_unknown_field_naming_it(obj: dict[str, Any], reason: str, known: dict[str, Any]) -> None:
    for fast in (True, False):
        with pytest.raises(InvalidDocument) as caught:
            if fast:
                document_row(obj, RULES)
            else:
                with python_only():
                    document_row(obj, RULES)
        assert str(caught.value) == reason
    ignoring = Rules(RULES.allowed_hosts, ignore_extra_fields=True)  # the fields it knows, the others dropped
    assert document_row(obj, ignoring) == document_row(known, RULES)
    with python_only():
        assert document_row(obj, ignoring) == document_row(known, RULES)


def test_apply_dead_letters_unknown_fields(tmp_path: Path, database_url: str) -> None:
    env = {**service_env(tmp_path, database_url), "SITEMAPS_LOG_LEVEL": "WARNING"}
    cli("rebuild", "--source", write_jsonl(tmp_path / "site.jsonl", [doc(i, None) for i in range(10)]), env=env)
    events = [
        doc(100, None, op="upsert", lastMod="2024-06-01"),
        doc(101, None, podcast={"title": "t"}),
        {"op": "delete", "section": "books", "key": "3", "verison": 2},
        doc(102, None),
    ]
    out = cli("apply", write_jsonl(tmp_path / "events.jsonl", events), env=env).stdout
    assert out.startswith("applied 1, stale 0, rejected 3")
    reasons = [(d["source"], d["reason"]) for d in letters(env)]
    assert reasons == [
        ("events.jsonl:1", "unknown field 'lastMod'"),
        ("events.jsonl:2", "unknown field 'podcast'"),
        ("events.jsonl:3", "unknown field 'verison'"),
    ]
    cli("publish", env=env)
    assert urls(env) == 11  # document 3 was not deleted

    ignoring = {**env, "SITEMAPS_EXTRA_FIELDS": "ignore"}
    assert cli("apply", str(tmp_path / "events.jsonl"), env=ignoring).stdout.startswith("applied 4, stale 0")
    cli("publish", env=env)
    assert urls(env) == 12  # 100 and 101 added, 3 deleted
    assert len(letters(env)) == 3


def test_a_rebuild_source_line_with_an_unknown_field_is_dead_lettered(tmp_path: Path) -> None:
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    lines = [doc(i, None) for i in range(30)]
    lines[12] = doc(12, None, lastMod="2024")  # in the middle of a run the C loop takes
    lines[29] = doc(29, None, images=[{"loc": "https://cdn.x.io/i.jpg", "caption": "c", "license": "cc"}])
    out = cli("rebuild", "--source", write_jsonl(tmp_path / "site.jsonl", lines), env=env).stdout
    assert "applied 28, stale 0, rejected 2" in out
    assert [(d["source"], d["reason"]) for d in letters(env)] == [
        ("site.jsonl:13", "unknown field 'lastMod'"),
        ("site.jsonl:30", "images[0]: unknown field 'license'"),
    ]
    out = cli("rebuild", "--extra-fields", "ignore", "--source", str(tmp_path / "site.jsonl"), env=env).stdout
    assert "applied 30, stale 0, rejected 0" in out


def test_a_rebuild_query_with_a_column_that_is_no_field_is_refused(tmp_path: Path) -> None:
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    app_db = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_engine(app_db)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE books (id INTEGER, slug TEXT, updated TEXT, title TEXT)"))
        conn.execute(
            text("INSERT INTO books VALUES (:id, :slug, '2024-05-17', :title)"),
            [{"id": i, "slug": f"b{i}", "title": f"T{i}"} for i in range(20)],
        )
    engine.dispose()
    cli("rebuild", "--source", write_jsonl(tmp_path / "site.jsonl", [doc(i, None) for i in range(20)]), env=env)
    query = (
        f"SELECT 'books' AS section, id AS key, 'https://{HOST}/books/' || slug AS loc, updated AS lastmod, "
        "title FROM books"
    )
    refused = cli("rebuild", "--source-sql", query, "--source-database-url", app_db, env=env, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: the query's column 'title' is no document field (the fields: alternates, changefreq, images, key, "
        "lastmod, loc, news, priority, section, version, video): select only those, or give --extra-fields ignore "
        "(SITEMAPS_EXTRA_FIELDS) to leave the others out"
    ]
    assert letters(env) == []
    assert urls(env) == 20
    out = cli(
        "rebuild",
        "--source-sql",
        query,
        "--source-database-url",
        app_db,
        env={**env, "SITEMAPS_EXTRA_FIELDS": "ignore"},
    ).stdout
    assert "applied 20, stale 0, rejected 0" in out


def test_the_service_dead_letters_unknown_fields(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    cli("rebuild", "--source", write_jsonl(tmp_path / "site.jsonl", [doc(i, None) for i in range(5)]), env=env)
    feed = tmp_path / "events.jsonl"
    write_jsonl(feed, [doc(50, None, lastMod="2024-06-01"), doc(51, None)])
    svc = ServiceProcess(["run", "--follow", str(feed)], env, tmp_path / "service.log")
    try:
        assert wait_for(lambda: svc.counted() == (1, 0, 1), 30, "the events counted")
    finally:
        assert svc.stop()[0] == 0
    assert [d["reason"] for d in letters(env)] == ["unknown field 'lastMod'"]
