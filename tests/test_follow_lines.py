"""How the file follower cuts a file into events: complete lines only, each stripped, blank ones skipped, a
batch's end offset just past its last line, whatever the lines' sizes against the blocks it reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.sources import follow
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.snapshot.manifest import Manifest


@pytest.fixture
def offsets(database_url: str) -> Iterator[OffsetStore]:
    manifest = Manifest.open(database_url)
    yield OffsetStore(manifest)
    manifest.close()


CONTENT = (
    b'{"a":1}\n\n  \r\n{"b":"'
    + b"x" * 25
    + b'"}\r\n'
    + b"  padded  \n"
    + b"y" * 40
    + b"\n"
    + b"\n" * 3
    + b"z" * 17
    + b"\nunfinished"
)


def expected(max_records: int) -> list[tuple[list[tuple[str, bytes]], int]]:
    """The batches (items, end offset) that reading CONTENT line by line gives."""
    batches, items, offset, end = [], [], 0, 0
    for line in CONTENT.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        if line.strip():
            items.append((f"events.jsonl@{offset}", line.strip()))
        offset += len(line)
        end = offset
        if len(items) == max_records:
            batches.append((items, end))
            items = []
    if items or (batches and end > batches[-1][1]) or (not batches and end):
        batches.append((items, end))
    return batches


@pytest.mark.parametrize("block", [1, 3, 7, 16, 1 << 20])
@pytest.mark.parametrize("max_records", [1, 2, 100])
def test_lines_across_blocks(
    tmp_path: Path, offsets: OffsetStore, monkeypatch: pytest.MonkeyPatch, block: int, max_records: int
) -> None:
    monkeypatch.setattr(follow, "READ_BYTES", block)
    path = tmp_path / "events.jsonl"
    path.write_bytes(CONTENT)
    follower = FileFollower(path, offsets, interval=0.01)
    got = []
    while (batch := follower.poll(max_records, 0)) is not None:
        got.append((batch.items, batch.end[follower.position]))
    assert got == expected(max_records)
    assert got[-1][1] == CONTENT.rindex(b"\n") + 1  # the unfinished line is not read past
    with path.open("ab") as f:
        f.write(b"\n")
    batch = follower.poll(max_records, 0)
    assert batch is not None and batch.items == [(f"events.jsonl@{got[-1][1]}", b"unfinished")]
