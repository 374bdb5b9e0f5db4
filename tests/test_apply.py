"""The parallel apply path (worker processes parse the events and read the manifest) against the ground truth
and against the serial path, batch for batch."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.apply import WORKER_NICENESS
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.schema import dead_letters, documents, shards
from sitemap_keeper.snapshot.settings import Settings
from tests.service_helpers import HOST, mixed_stream


def tables(manifest: Manifest) -> dict[str, list[tuple[Any, ...]]]:
    d, s, letters = documents.c, shards.c, dead_letters.c
    with manifest.read() as conn:
        return {
            "documents": [
                tuple(r)
                for r in conn.execute(
                    select(
                        d.section, d.key, d.shard_no, d.version, d.loc, d.lastmod, d.size, d.xml, d.loc_hash
                    ).order_by(d.section, d.key)
                )
            ],
            "shards": [
                tuple(r)
                for r in conn.execute(
                    select(s.section, s.shard_no, s.url_count, s.byte_count).order_by(s.section, s.shard_no)
                )
            ],
            "letters": [
                (src, reason, bytes(raw))
                for src, reason, raw in conn.execute(
                    select(letters.source, letters.reason, letters.raw).order_by(letters.id)
                )
            ],
        }


def test_parallel_apply_matches_serial_and_model(database_url: str, tmp_path: Path) -> None:
    values, _keys, model, bad = mixed_stream(3000, 400, seed=7)
    items = [(f"t:{i}", raw) for i, raw in enumerate(values)]

    def app(name: str, url: str, workers: int) -> App:
        # Tiny shards: many of them, and updates that outgrow theirs and move.
        return App(
            Settings(
                data_dir=tmp_path / name,
                database_url=url,
                allowed_hosts=(HOST,),
                max_urls=7,
                max_bytes=4096,
                workers=workers,
            )
        )

    parallel = app("parallel", database_url, 2)
    serial = app("serial", f"sqlite:///{tmp_path / 'serial.db'}", 0)
    parallel.applier.parallel_min = 1  # every batch through the workers, in many chunks: a document's events
    parallel.applier.parse_chunk = 37  # fall in several chunks of one batch
    try:
        total = 0
        for start in range(0, len(items), 500):
            batch = items[start : start + 500]
            counts = parallel.applier.apply_raw(batch)
            assert counts == serial.applier.apply_raw(batch)
            total += counts.applied + counts.stale + counts.rejected
        assert parallel.applier.worker_pids(), "the workers were not used"
        # They yield a shared core to the applying process.
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in parallel.applier.worker_pids()} == {
            os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS
        }
        assert total == len(items)
        got = tables(parallel.manifest)
        assert got == tables(serial.manifest)
        assert [raw for _s, _r, raw in got["letters"]] == bad
        assert {loc: lastmod for _s, _k, loc, lastmod in parallel.manifest.reader.documents()} == model.expected()
        counted: dict[tuple[str, int], list[int]] = {}
        for section, _k, shard_no, _v, _loc, _lm, size, xml, _h in got["documents"]:
            if xml is not None:
                entry = counted.setdefault((section, shard_no), [0, 0])
                entry[0] += 1
                entry[1] += size
        assert {(s, n): [c, b] for s, n, c, b in got["shards"] if c} == counted
    finally:
        parallel.close()
        serial.close()


def test_no_collection_runs_while_a_batch_is_applied(tmp_path: Path) -> None:
    values, _keys, model, _bad = mixed_stream(300, 100, seed=3)
    app = App(Settings(data_dir=tmp_path / "data", allowed_hosts=(HOST,)))
    seen: list[bool] = []
    try:
        counts = app.applier.apply_raw(
            [(f"t:{i}", raw) for i, raw in enumerate(values)], extra=lambda _conn: seen.append(gc.isenabled())
        )
        assert counts.applied > 0
        assert seen == [False], "the collector ran during the batch"
        assert gc.isenabled(), "the collector was not resumed"
        with pytest.raises(ValueError):  # resumed after a failed batch too
            app.applier.apply_raw([("t:x", values[0])], extra=lambda _conn: int("not a number"))
        assert gc.isenabled()
        assert {loc: lastmod for _s, _k, loc, lastmod in app.manifest.reader.documents()} == model.expected()
    finally:
        app.close()
