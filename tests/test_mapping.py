"""The mapping file: refused at start-up with one line when it cannot be honoured, and a filter that selects the
same rows in SQL (PostgreSQL, SQLite) as on the row images of change events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sitemap_keeper.snapshot.document import InvalidDocument
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.mapping import MappingError, load_mapping, parse_mapping
from tests.conftest import fresh_pg_database
from tests.service_helpers import letters, local_site
from tests.support import cli

GOOD = """
sections:
  books:
    table: app.books
    key: id
    loc: "https://librer.io/books/{slug}"
    lastmod: updated_at
    where: {where}
"""

FILTERS = [
    "flag",
    "not flag",
    "flag = false",
    "label = 'x'",
    "label != 'x'",
    "label <> 'it''s'",
    "num = 3",
    "num != -2",
    "label is null",
    "num is not null and flag",
    "flag and label = 'y' and num is null",
    "['label is not null', 'num = 3']",
]


def section(where: str):  # type: ignore[no-untyped-def]
    return parse_mapping(GOOD.replace("{where}", where if where.startswith("[") else f'"{where}"')).sections[0]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("a = 1 or b = 2", "'a = 1 or b = 2' in 'a = 1 or b = 2' is not supported"),
        ("a > 1", "cannot read '> 1'"),
        ("a in (1, 2)", "cannot read '(1, 2)'"),
        ("lower(a) = 'x'", "cannot read \"(a) = 'x'\""),
        ("a = null", "for NULL say `is null`"),
        ("a = 1.5", "cannot read"),
        ("a = b", "'b' is not a literal"),
        ("", "'(empty)'"),
    ],
)
def test_unsupported_filters_are_refused_when_loading(where: str, message: str) -> None:
    with pytest.raises(MappingError) as err:
        section(where)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text_", "message"),
    [
        ("sections: {}", "must have a `sections:` map"),
        ("sections:\n  Books: {table: a.b, key: id, loc: 'https://h/{id}'}", "section name 'Books'"),
        ("sections:\n  b: {table: books, key: id, loc: 'https://h/{id}'}", "sections.b.table must be schema.table"),
        ("sections:\n  b: {table: a.b, loc: 'https://h/{id}'}", "sections.b: `key` is required"),
        ("sections:\n  b: {table: a.b, key: id, loc: 'https://h/x'}", "names no column"),
        ("sections:\n  b: {table: a.b, key: id, loc: 'https://h/{id!r}'}", "only {column} and {column:raw}"),
        ("sections:\n  b: {table: a.b, key: id, loc: '/books/{id}'}", "http(s) URL template"),
        ("sections:\n  b: {table: a.b, key: id, loc: 'https://h/{id}', lastmod: 'x y'}", "'x y' is not a column"),
        ("sections:\n  b: {table: a.b, key: id, loc: 'https://h/{id}', colour: red}", "unknown setting 'colour'"),
        ("sections:\n  b: {table: a.b, key: id, loc: 'https://h/{id}', types: {u: epoch}}", "unknown type 'epoch'"),
    ],
)
def test_bad_mappings_are_refused_with_one_line(text_: str, message: str) -> None:
    with pytest.raises(MappingError) as err:
        parse_mapping(text_)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_commands_refuse_a_bad_mapping_before_starting(tmp_path: Path) -> None:
    env = {"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    bad = tmp_path / "mapping.yaml"
    bad.write_text(GOOD.replace("{where}", "'a > 1'"))
    for args in (
        ["run", "--format", "debezium", "--follow", str(tmp_path / "events")],
        ["apply", "--format", "debezium", "-"],
        ["rebuild", "--source-database-url", "sqlite://"],
    ):
        proc = cli(*args, "--mapping", str(bad), env=env, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"mapping {bad}: sections.books.where: cannot read '> 1'" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = cli("run", "--format", "debezium", "--follow", str(tmp_path / "events"), env=env, check=False)
    assert proc.returncode == 2 and "--format debezium needs --mapping FILE" in proc.stderr
    proc = cli(
        "run", "--kafka-bootstrap-servers", "127.0.0.1:1", "--kafka-topics", "app.public.(books", env=env, check=False
    )
    assert proc.returncode == 2 and "neither topic names nor a regular expression" in proc.stderr, proc.stderr
    proc = cli("apply", "--format", "debezium", "--mapping", str(tmp_path / "none.yaml"), "-", env=env, check=False)
    assert proc.returncode == 2 and "cannot read it" in proc.stderr


def test_loading_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("sections: [")
    with pytest.raises(MappingError, match=f"mapping {path}: not valid YAML"):
        load_mapping(path)


@pytest.fixture(params=["sqlite", "postgresql"])
def app_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
    else:
        yield from fresh_pg_database()


def test_a_filter_selects_the_same_rows_in_sql_as_on_row_images(app_database: str) -> None:
    rnd = random.Random(3)
    rows = [
        {
            "id": i,
            "slug": f"b{i}",
            "updated_at": None,
            "flag": rnd.choice([True, False, None]),
            "label": rnd.choice(["x", "y", "it's", "", None]),
            "num": rnd.choice([3, -2, 0, None]),
        }
        for i in range(400)
    ]
    engine = create_engine(app_database)
    schema = "app" if engine.dialect.name == "postgresql" else "main"
    with engine.begin() as conn:
        if schema == "app":
            conn.execute(text("CREATE SCHEMA app"))
        conn.execute(
            text(
                f"CREATE TABLE {schema}.books (id INTEGER PRIMARY KEY, slug TEXT, updated_at TIMESTAMP, "
                "flag BOOLEAN, label TEXT, num INTEGER)"
            )
        )
        conn.execute(text(f"INSERT INTO {schema}.books VALUES (:id, :slug, :updated_at, :flag, :label, :num)"), rows)
    try:
        for where in FILTERS:
            sec = section(where.replace("app.books", f"{schema}.books"))
            sec = type(sec)(**{**{f: getattr(sec, f) for f in sec.__slots__}, "schema": schema})
            with engine.connect() as conn:
                in_sql = {r["id"] for r in conn.execute(sec.query()).mappings()}
            on_images = {r["id"] for r in rows if sec.matches(r)}
            assert in_sql == on_images, where
            assert 0 < len(in_sql) < len(rows), where  # the filter decides something
    finally:
        engine.dispose()


def test_a_row_image_without_a_filter_column_is_refused() -> None:
    sec = section("flag and label = 'x'")
    with pytest.raises(InvalidDocument, match="the row has no column label"):
        sec.matches({"id": 1, "flag": True})


def test_keys_and_locs() -> None:
    sec = parse_mapping("""
sections:
  s:
    table: a.t
    key: [shop, sku]
    loc: "https://librer.io/{shop}/{path:raw}?v={sku}"
""").sections[0]
    row = {"shop": "a/b", "sku": 7, "path": "x/y z"}
    assert sec.key_of(row) == "a%2Fb/7"
    assert sec.loc_of(row) == "https://librer.io/a%2Fb/x/y z?v=7"
    with pytest.raises(InvalidDocument, match="key column sku is missing or null"):
        sec.key_of({"shop": "a", "sku": None})
    with pytest.raises(InvalidDocument, match="wrong type: bool"):
        sec.key_of({"shop": "a", "sku": True})


def test_rebuild_from_the_mapping_dead_letters_rows_that_make_no_document(tmp_path: Path, database_url: str) -> None:
    app = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_engine(app)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE books (id INTEGER PRIMARY KEY, slug TEXT, updated_at TIMESTAMP, "
                "flag BOOLEAN, label TEXT, num INTEGER)"
            )
        )
        conn.execute(
            text("INSERT INTO books VALUES (:id, :slug, :u, :flag, NULL, NULL)"),
            [
                {"id": 1, "slug": "one", "u": "2024-06-01 08:30:00.250000", "flag": True},
                {"id": 2, "slug": None, "u": "2024-06-02 08:30:00", "flag": True},
                {"id": 3, "slug": "three", "u": "2024-06-03 08:30:00", "flag": False},
                {"id": 4, "slug": "l'été/4", "u": "2024-06-04", "flag": True},
            ],
        )
    engine.dispose()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(GOOD.replace("app.books", "main.books").replace("{where}", "flag"))
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_ALLOWED_HOSTS": "librer.io",
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    out = cli("rebuild", "--mapping", str(mapping), "--source-database-url", app, env=env).stdout
    assert "applied 2, stale 0, rejected 1" in out
    manifest = Manifest.open(database_url)
    try:
        ((source, reason, raw),) = letters(manifest)
    finally:
        manifest.close()
    assert reason == "loc column slug is missing or null" and b'"id":2' in raw, (source, reason, raw)
    assert local_site(tmp_path / "data") == {
        "https://librer.io/books/one": "2024-06-01T08:30:00.250000+00:00",
        "https://librer.io/books/l%27%C3%A9t%C3%A9%2F4": "2024-06-04",
    }
    # A table the application database does not have: one line, exit status 1, the live site unchanged.
    mapping.write_text(GOOD.replace("app.books", "main.nosuch").replace("{where}", "flag"))
    proc = cli("rebuild", "--mapping", str(mapping), "--source-database-url", app, env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "the mapping's query failed on the source database:" in proc.stderr and "nosuch" in proc.stderr
    assert len(local_site(tmp_path / "data")) == 2
