"""Store.map takes its items as they come: a publish streams rendered shards into the store, so holding them
all before the first put would make a full publish's memory grow with the size of the site."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitemap_keeper.snapshot.stores.local import LocalStore

N = 120  # well past the parallel window of 2 x parallelism


@pytest.mark.parametrize("parallelism", [1, 4, 16])
def test_map_puts_while_items_are_still_coming(tmp_path: Path, parallelism: int) -> None:
    store = LocalStore(tmp_path)
    store.parallelism = parallelism
    store.create("g")
    made = 0

    def shards() -> Iterator[tuple[str, bytes]]:
        nonlocal made
        for i in range(N):
            made += 1
            yield f"s{i}.xml.gz", f"shard {i}".encode()

    ahead: list[int] = []  # for each put, how many items had been produced but not yet put

    def put(item: tuple[str, bytes]) -> str:
        ahead.append(made - int(item[0][1:-7]))
        return store.put("g", *item)

    md5s = store.map(put, shards())
    listing = store.list("g")
    assert sorted(listing) == sorted(f"s{i}.xml.gz" for i in range(N))
    assert md5s == [hashlib.md5(f"shard {i}".encode()).hexdigest() for i in range(N)]  # in order
    assert all(store.get("g", f"s{i}.xml.gz") == f"shard {i}".encode() for i in range(N))
    assert max(ahead) <= 2 * parallelism + 1, max(ahead)
