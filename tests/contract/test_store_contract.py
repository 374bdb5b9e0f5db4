"""The store contract (snapshot/stores/base.py), one behaviour a test, run against every backend: the local
directory tree, S3 on moto and on `rclone serve s3`, and S3's one-bucket prefix layout. A new backend joins
by adding itself to `BACKENDS`; what only one backend does (bucket policies, retries, content types) is
tested beside it (tests/test_s3_store.py)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores import Store, open_store
from tests.services.s3 import S3Server

G1, G2, G3 = "20240101-000000-000-0001", "20240101-000001-000-0002", "20240101-000002-000-0003"
BACKENDS = ["local", "moto", "rclone", "moto-prefix"]


def s3_settings(server: S3Server, prefix: str, **changes: object) -> Settings:
    return Settings(
        storage="s3",
        s3_endpoint=server.endpoint,
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
        s3_secure=False,
        s3_region=server.region,
        bucket_prefix=prefix,
        s3_public_read=server.supports_bucket_policy,
    ).replace(**changes)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, s3_bucket_prefix: str) -> Iterator[Store]:
    """An empty store of each backend, through the factory the commands use (`open_store`)."""
    if request.param == "local":
        yield open_store(Settings(data_dir=tmp_path))
        return
    kind, _, layout = request.param.partition("-")
    server: S3Server = request.getfixturevalue(f"{kind}_s3")
    if not server.running:
        server.start()
    prefix = s3_bucket_prefix.rstrip("-")
    one_bucket = f"{prefix}-one" if layout else None
    settings = s3_settings(server, prefix, **({"s3_layout": "prefix", "s3_bucket": one_bucket} if layout else {}))
    s = open_store(settings)
    try:
        yield s
    finally:
        for gen_id in s.generations():
            s.delete(gen_id)
        if one_bucket:
            with contextlib.suppress(Exception):
                server.delete_bucket(one_bucket)


def made(store: Store, *gen_ids: str) -> Store:
    for gen_id in gen_ids:
        store.create(gen_id)
    return store


def test_a_put_file_reads_back_whole(store: Store) -> None:
    made(store, G1)
    data = b"\x1f\x8b" + bytes(range(256)) * 40
    store.put(G1, "sitemap-books-1.xml.gz", data)
    assert store.get(G1, "sitemap-books-1.xml.gz") == data


def test_put_returns_the_md5_of_the_bytes(store: Store) -> None:
    made(store, G1)
    assert store.put(G1, "sitemap.xml", b"<sitemapindex/>") == hashlib.md5(b"<sitemapindex/>").hexdigest()


def test_an_empty_file_is_a_file(store: Store) -> None:
    made(store, G1)
    store.put(G1, "empty.txt", b"")
    assert store.get(G1, "empty.txt") == b""
    assert store.list(G1)["empty.txt"].size == 0


def test_a_second_put_replaces_the_file(store: Store) -> None:
    made(store, G1)
    store.put(G1, "sitemap.xml", b"<old/>")
    store.put(G1, "sitemap.xml", b"<newer/>")
    assert store.get(G1, "sitemap.xml") == b"<newer/>"
    assert store.list(G1)["sitemap.xml"].size == len(b"<newer/>")


def test_a_missing_file_is_file_not_found(store: Store) -> None:
    made(store, G1)
    store.put(G1, "sitemap.xml", b"<x/>")
    with pytest.raises(FileNotFoundError):
        store.get(G1, "missing.xml")


def test_a_file_of_a_missing_generation_is_file_not_found(store: Store) -> None:
    with pytest.raises(FileNotFoundError):
        store.get(G2, "sitemap.xml")


def test_list_names_every_file_with_its_size_and_md5_if_known(store: Store) -> None:
    made(store, G1)
    files = {"sitemap.xml": b"<index/>", "sitemap-books-1.xml.gz": b"s" * 1000, "key.txt": b"k"}
    md5s = {name: store.put(G1, name, data) for name, data in files.items()}
    listing = store.list(G1)
    assert {name: info.size for name, info in listing.items()} == {n: len(d) for n, d in files.items()}
    assert all(info.md5 in (None, md5s[name]) for name, info in listing.items())


def test_a_missing_or_empty_generation_lists_nothing(store: Store) -> None:
    made(store, G1)
    assert store.list(G1) == {}
    assert store.list(G2) == {}


def test_a_listing_holds_only_its_own_generation(store: Store) -> None:
    made(store, G1, G2)
    store.put(G1, "sitemap.xml", b"1")
    store.put(G2, "sitemap.xml.gz", b"22")  # a name that extends one of G1's
    store.put(G2, "other.xml", b"333")
    assert store.list(G1).keys() == {"sitemap.xml"}
    assert store.list(G2).keys() == {"sitemap.xml.gz", "other.xml"}


def test_copy_brings_a_file_unchanged_and_keeps_the_source(store: Store) -> None:
    made(store, G1, G2)
    store.put(G1, "sitemap-books-1.xml.gz", b"shard" * 100)
    store.copy(G1, G2, "sitemap-books-1.xml.gz")
    assert store.get(G2, "sitemap-books-1.xml.gz") == b"shard" * 100
    assert store.get(G1, "sitemap-books-1.xml.gz") == b"shard" * 100
    assert store.list(G2).keys() == {"sitemap-books-1.xml.gz"}


def test_a_copy_repeated_or_over_a_file_leaves_the_source_s_bytes(store: Store) -> None:
    made(store, G1, G2)
    store.put(G1, "a.xml", b"<from-g1/>")
    store.put(G2, "a.xml", b"<stale/>")
    store.copy(G1, G2, "a.xml")
    store.copy(G1, G2, "a.xml")  # a retried copy
    assert store.get(G2, "a.xml") == b"<from-g1/>"


def test_a_copy_of_a_missing_file_fails_naming_it_and_copies_nothing(store: Store) -> None:
    made(store, G1, G2)
    with pytest.raises(Exception, match=r"nope\.xml"):
        store.copy(G1, G2, "nope.xml")
    assert store.list(G2) == {}


def test_create_is_idempotent_and_generations_lists_them_in_order(store: Store) -> None:
    made(store, G2, G1, G2)
    store.put(G2, "a.xml", b"a")
    store.write_stamp(G1, "site")  # the first object of a publish: an empty container need not be listed
    assert store.generations() == [G1, G2]


def test_delete_removes_a_generation_and_its_files(store: Store) -> None:
    made(store, G1, G2)
    store.put(G1, "a.xml", b"a")
    store.put(G2, "a.xml", b"b")
    store.delete(G1)
    assert store.generations() == [G2]
    assert store.list(G1) == {}
    with pytest.raises(FileNotFoundError):
        store.get(G1, "a.xml")
    assert store.get(G2, "a.xml") == b"b"


def test_deleting_a_missing_generation_is_not_an_error(store: Store) -> None:
    store.delete(G3)
    assert store.generations() == []


def test_a_stamp_reads_back_and_is_not_one_of_the_files(store: Store) -> None:
    made(store, G1)
    store.put(G1, "sitemap.xml", b"<x/>")
    store.write_stamp(G1, "site-1234")
    assert store.read_stamp(G1) == "site-1234"
    assert store.list(G1).keys() == {"sitemap.xml"}


def test_no_stamp_reads_as_none(store: Store) -> None:
    made(store, G1)
    assert store.read_stamp(G1) is None
    assert store.read_stamp(G2) is None  # no such generation


def test_sealed_and_public_files_read_back_unchanged(store: Store) -> None:
    made(store, G1)
    store.put(G1, "sitemap.xml", b"<x/>")
    store.seal(G1)
    store.make_public(G1)
    assert store.get(G1, "sitemap.xml") == b"<x/>"
    assert store.list(G1).keys() == {"sitemap.xml"}


def test_map_returns_the_results_in_the_items_order(store: Store) -> None:
    made(store, G1)
    names = [f"sitemap-s-{i}.xml.gz" for i in range(12)]
    md5s = store.map(lambda n: store.put(G1, n, n.encode()), iter(names))
    assert md5s == [hashlib.md5(n.encode()).hexdigest() for n in names]
    assert store.list(G1).keys() == set(names)
