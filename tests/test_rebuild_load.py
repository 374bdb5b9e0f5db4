"""A rebuild's documents rows reach the database as they left the workers, on SQLite and PostgreSQL.

On SQLite most runs travel as one JSON object each (`Manifest.bulk.load_documents`); the runs the object cannot carry
(a repeated key, a code past 64 bits) go through executemany. Both must store the same rows.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, select

from sitemap_keeper.snapshot.document import InvalidDocument, check_key
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.bulk import (
    HASH_WIDTH,
    SIZE_BITS,
    DocumentRun,
    hash_column,
    json_rows,
    sqlite_json,
)
from sitemap_keeper.snapshot.manifest.connection import connect
from sitemap_keeper.snapshot.manifest.schema import documents

LARGEST_CODED_VERSION = (1 << (63 - SIZE_BITS)) - 2  # (version + 1) << SIZE_BITS is still below 2**63
HASH_MIN, HASH_MAX = -(1 << 63), (1 << 63) - 1  # owners.loc_hash's range
RUNS: list[DocumentRun] = [
    # keys JSON must escape (a key may hold a tab or a line break: `check_key`); versions none, zero and the
    # largest the code holds; the largest size
    (
        "books",
        1,
        ("1", 'quo"te', "back\\slash", "ünï", "😀", "\u2028", "a/b", "tab\tnew\nline\rend"),
        (None, 0, 1, LARGEST_CODED_VERSION, None, 7, 8, 9),
        (10, 20, 30, 40, (1 << SIZE_BITS) - 1, 60, 70, 80),
        (0, 1, -1, HASH_MIN, HASH_MAX, 123456789012345678, -5, 6),  # URL hashes: signed 64-bit, both ends
    ),
    ("books", 2, ("plain", "no-versions"), (None, None), (1, 2), (11, 12)),
    ("books", 3, ("big",), (LARGEST_CODED_VERSION + 1,), (5,), (HASH_MAX,)),  # past the code: executemany
    ("authors", 1, ("x", "y", "x"), (1, 2, 3), (5, 6, 7), (21, 22, 23)),  # a repeated key: executemany, all kept
    ("authors", 2, ("huge",), (None,), (1 << SIZE_BITS,), (HASH_MIN,)),  # a size past its bits: executemany
]


Row = tuple[str, str, int, int | None, int, int]


def in_order(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3] is not None, r[3] or 0, r[4], r[5]))


def expected_rows(runs: list[DocumentRun]) -> list[Row]:
    return in_order(
        [
            (s, k, n, v, z, h)
            for s, n, keys, versions, sizes, hashes in runs
            for k, v, z, h in zip(keys, versions, sizes, hashes, strict=True)
        ]
    )


def test_runs_go_as_json_objects_only_when_the_object_holds_them() -> None:
    assert sqlite_json()  # else every run would take executemany and the JSON path would go untested
    coded = [json_rows(run) for run in RUNS]
    assert [data is not None for data in coded] == [True, True, False, False, False]
    _section, _shard_no, keys, versions, sizes, hashes = RUNS[0]
    assert orjson.loads(coded[0] or b"") == {
        k: z if v is None else z + ((v + 1) << SIZE_BITS) for k, v, z in zip(keys, versions, sizes, strict=True)
    }
    column = hash_column(hashes)
    assert len(column) == HASH_WIDTH * len(hashes)
    assert [int(column[n * HASH_WIDTH : (n + 1) * HASH_WIDTH]) for n in range(len(hashes))] == list(hashes)


def test_load_documents_stores_every_row_as_given(database_url: str) -> None:
    assert load_and_read(database_url, RUNS) == expected_rows(RUNS)


def valid_key(key: str) -> bool:
    try:
        return check_key(key) == key
    except InvalidDocument:
        return False


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20).filter(valid_key),
            st.one_of(st.none(), st.integers(0, 1000), st.integers(0, LARGEST_CODED_VERSION)),
            st.integers(1, 1 << SIZE_BITS),
            st.integers(HASH_MIN, HASH_MAX),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_any_valid_keys_versions_sizes_and_hashes_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, int | None, int, int]]
) -> None:
    """Random valid keys, versions the code holds, sizes and URL hashes: a run goes as a JSON object unless it
    repeats a key or holds a size past its bits (RUNS has the versions past the code)."""
    keys, versions, sizes, hashes = (tuple(col) for col in zip(*rows, strict=True))
    runs: list[DocumentRun] = [("books", 1, keys, versions, sizes, hashes)]
    as_json = len(set(keys)) == len(keys) and max(sizes) < 1 << SIZE_BITS
    assert (json_rows(runs[0]) is not None) == as_json
    path = tmp_path_factory.mktemp("load") / "manifest.db"
    assert load_and_read(f"sqlite:///{path}", runs) == expected_rows(runs)


def load_and_read(database_url: str, runs: list[DocumentRun]) -> list[Row]:
    """The runs loaded into a table like the rebuild's staging table, read back sorted."""
    manifest = Manifest(connect(database_url))
    try:
        manifest.create()
        table = documents.to_metadata(MetaData(), name="documents_load")
        for ix in list(table.indexes):  # as the rebuild's staging table: repeated keys are resolved later
            table.indexes.discard(ix)
        with manifest.write() as conn:
            table.create(conn)
            manifest.bulk.load_documents(conn, table.name, runs)
        return read_back(manifest, table)
    finally:
        manifest.close()


def read_back(manifest: Manifest, table: Table) -> list[Row]:
    with manifest.read() as conn:
        rows = conn.execute(
            select(table.c.section, table.c.key, table.c.shard_no, table.c.version, table.c.size, table.c.loc_hash)
        ).all()
    return in_order([(s, k, n, v, z, h) for s, k, n, v, z, h in rows])
