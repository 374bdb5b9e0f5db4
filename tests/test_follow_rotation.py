"""`sitemaps run --follow` under logrotate (issue 22, defect 4): `tail -F` semantics, copytruncate, the offset
kept with the file's identity, and whatever cannot be accounted for reported (log, metric, /readyz).

The in-process tests drive the follower through the service's own exactly-once path (each batch applied with
its offsets in one transaction); the last one runs the real `sitemaps run --follow` process.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from tests.service_helpers import HOST, ServiceProcess, event, service_env, stored_offsets
from tests.services.ports import wait_for


class Harness:
    """A manifest, its offsets, and what the followed file's lines must leave in it."""

    def __init__(self, database_url: str, path: Path) -> None:
        from sitemap_keeper.incremental.apply import Applier

        self.path = path
        self.manifest = Manifest.open(database_url)
        self.offsets = OffsetStore(self.manifest)
        self.applier = Applier(self.manifest, Rules(frozenset({HOST, f"cdn.{HOST}"})), Limits())
        self.written: set[str] = set()
        self.next = 0

    def lines(self, n: int, path: Path | None = None, tail: bytes = b"") -> None:
        """Append n new events (each a new document) to the file, and `tail` (an unfinished line) after."""
        raws = []
        for _ in range(n):
            ev = event(self.next, 1)
            self.written.add(ev["key"])
            raws.append(orjson.dumps(ev) + b"\n")
            self.next += 1
        with (path or self.path).open("ab") as f:
            f.write(b"".join(raws) + tail)

    def follower(self) -> FileFollower:
        return FileFollower(self.path, self.offsets, interval=0.01)

    def consume(self, follower: FileFollower) -> None:
        """Everything there is to read now, each batch committed with its offsets (Service.apply's path)."""
        while (batch := follower.poll(7, 0)) is not None:
            self.applier.apply_raw(batch.items, extra=self.offsets.writer(batch.start, batch.end))
            follower.committed(batch)
        follower.check()

    def applied(self) -> set[str]:
        return {key for _s, key, _loc, _lastmod in self.manifest.reader.documents()}

    def close(self) -> None:
        self.applier.close()
        self.manifest.close()


@pytest.fixture
def h(tmp_path: Path, database_url: str) -> Iterator[Harness]:
    harness = Harness(database_url, tmp_path / "events.jsonl")
    yield harness
    harness.close()


def rotate_create(path: Path, to: str = ".1") -> Path:
    """logrotate's create mode: rename the file, make a new empty one at the path."""
    old = path.with_name(path.name + to)
    os.rename(path, old)
    path.touch()
    return old


def test_create_mode_rotation_while_running_reads_the_old_file_to_its_end_then_the_new(h: Harness) -> None:
    f = h.follower()
    h.lines(10)
    h.consume(f)
    h.lines(5)  # written to the old file before the rotation, not read yet
    rotate_create(h.path)
    h.lines(8)
    h.consume(f)
    h.consume(f)
    assert h.applied() == h.written and f.unaccounted == 0 and f.status == (True, "ok")
    h.lines(3)
    h.consume(f)
    assert h.applied() == h.written
    f.close()


def test_a_restart_after_a_rotation_finishes_the_old_file_and_never_applies_its_offset_to_the_new(h: Harness) -> None:
    f = h.follower()
    h.lines(10)
    h.consume(f)
    f.close()  # stopped; meanwhile the old file gets more lines, is rotated, and the new one fills
    h.lines(4)
    rotate_create(h.path)
    h.lines(30)
    f = h.follower()
    h.consume(f)
    h.consume(f)
    assert h.applied() == h.written and f.unaccounted == 0
    f.close()
    # And once more, stopped between the two files: the stored identity is the old file's.
    h.lines(2)
    f = h.follower()
    h.consume(f)
    assert h.applied() == h.written
    f.close()


def test_copytruncate_is_detected_and_the_copy_read_past_the_offset(h: Harness) -> None:
    f = h.follower()
    h.lines(10)
    h.consume(f)
    h.lines(6)  # copied, then truncated, before the follower read them
    shutil.copyfile(h.path, h.path.with_name("events.jsonl.1"))
    os.truncate(h.path, 0)
    h.lines(40)  # longer than before: the size alone would not show the truncation
    h.consume(f)
    h.consume(f)
    assert h.applied() == h.written and f.unaccounted == 0
    f.close()


def test_what_cannot_be_accounted_for_is_reported(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    f = h.follower()
    h.lines(10)
    h.consume(f)
    f.close()
    h.lines(5)  # never read: the old file is deleted before the restart
    rotate_create(h.path).unlink()
    h.lines(12)
    lost = set(h.written)
    with caplog.at_level(logging.WARNING):
        f = h.follower()
        h.consume(f)
    assert f.unaccounted == 1 and not f.status[0] and "is gone" in f.status[1], f.status
    assert any("is gone" in r.getMessage() for r in caplog.records)
    assert h.applied() == lost - {str(k) for k in range(10, 15)}  # the new file whole, from byte 0
    # An unfinished last line in a rotated file is reported too.
    h.lines(1, tail=b'{"op": "upsert", "sec')
    rotate_create(h.path, ".2")
    h.lines(1)
    h.consume(f)
    h.consume(f)
    assert f.unaccounted == 2 and "no complete line" in f.status[1]
    f.close()


def test_the_service_follows_a_rotation_and_reports_a_loss_on_readyz(tmp_path: Path) -> None:
    h = Harness(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "events.jsonl")
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    topic = f"file:{h.path.resolve()}"
    h.lines(20)
    svc = ServiceProcess(["run", "--follow", str(h.path)], env, tmp_path / "service.log")
    try:
        wait_for(lambda: stored_offsets(h.manifest, topic) == {0: h.path.stat().st_size}, 60, "the file applied")
        rotate_create(h.path)
        h.lines(15)
        wait_for(lambda: h.applied() == h.written, 60, "the new file applied")
        assert svc.get("/readyz") == (200, "ok\n")
        assert svc.stop()[0] == 0
        h.lines(3)  # never read: the old file is gone before the restart
        rotate_create(h.path, ".2").unlink()
        h.lines(4)
        svc = ServiceProcess(["run", "--follow", str(h.path)], env, tmp_path / "service.log")
        wait_for(lambda: "is gone" in svc.get("/readyz")[1], 30, "/readyz reporting the loss")
        assert svc.get("/readyz")[0] == 503
        wait_for(lambda: svc.metrics().get("sitemaps_source_unaccounted") == 1, 30, "the metric")
        assert "is gone" in svc.log_tail()
        assert svc.stop()[0] == 0
    finally:
        svc.kill()
        h.close()
