"""The fault harness (tests/harness/faults.py): a small run by default, every fault kind, rclone, the one-bucket
layout and the broker scenario with SITEMAPS_FULL_HARNESS=1 (SITEMAPS_HARNESS_SEED picks the seed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.faults import Row, deployment, run, table
from tests.services.s3 import MotoS3Server, S3Server

FULL = os.environ.get("SITEMAPS_FULL_HARNESS") == "1"
SEED = int(os.environ.get("SITEMAPS_HARNESS_SEED", "1"))


def test_faults_never_break_nor_delete_the_live_generation(
    moto_s3: MotoS3Server, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    servers: dict[str, S3Server] = {"moto": moto_s3}
    if FULL:
        servers["rclone"] = request.getfixturevalue("rclone_s3")
    # By default without the broker scenario: it is tests/test_kafka.py's own test, which runs anyway.
    rows = run(tmp_path, SEED, FULL, servers, broker=FULL)
    report = table(rows)
    print(report)
    assert [p for r in rows for p in r.problems] == [], report
    assert all(r.ok for r in rows), report
    s3 = [r for r in rows if r.target.startswith("S3") and r.rate in ("20%", "50%")]
    assert s3 and all(r.injected for r in s3), report  # the faults did happen
    assert sum(r.injected for r in rows if r.target == "Kubernetes API"), report


def test_the_harness_sees_a_broken_or_deleted_live_generation(moto_s3: MotoS3Server, tmp_path: Path) -> None:
    """The harness's own check can fail: a stale, an invalid and a deleted live generation are each counted."""
    with deployment(moto_s3, tmp_path, SEED, publishes=1) as h:
        row = Row("S3", "self-test", "-")
        assert h.served(row, "the rebuild", [h.truth]) == h.truth and not row.problems
        stale = dict(h.truth)
        stale.popitem()
        assert h.served(row, "a lost URL", [stale]) is None and row.broken == 1
        live = h.w.serving()
        h.w.server.put_bytes(live, "sitemap.xml", b"<?xml version='1.0'?><sitemapindex/>")
        assert h.served(row, "a corrupted index", [h.truth]) is None and row.broken == 2
        h.w.server.delete_bucket(live)
        assert h.served(row, "a deleted bucket", [h.truth]) is None and (row.broken, row.deleted) == (2, 1)
