"""`sitemaps run --follow FILE` (the service with no servers), the offset fence, and the Lease election."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from sitemap_keeper.incremental import service as service_module
from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.apply import Applier, Prepared
from sitemap_keeper.incremental.leader import Leader, LeaseLeader, open_leader
from sitemap_keeper.incremental.offsets import OffsetConflict, OffsetStore
from sitemap_keeper.incremental.service import Service
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.incremental.sources.follow import FileFollower
from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.limits import Limits
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import Counts as CountsType
from tests.service_helpers import (
    HOST,
    MALFORMED,
    ServiceProcess,
    event,
    letters,
    local_site,
    manifest_versions,
    mixed_stream,
    service_env,
    stored_offsets,
)
from tests.services.kube import KubeAPIServer
from tests.services.ports import wait_for
from tests.support import cli

HUGE = orjson.dumps({"section": "books", "key": "huge", "loc": f"https://{HOST}/h", "pad": "x" * 1_100_000})


def test_follow_a_file_exactly_once_across_restarts(tmp_path: Path, database_url: str) -> None:
    values, _keys, model, bad = mixed_stream(2000, 300, seed=3)
    bad.append(HUGE)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*values[:1000], HUGE, b""]) + b"\n")  # a blank line is skipped
    env = service_env(tmp_path, database_url)
    topic = f"file:{path.resolve()}"
    manifest = Manifest.open(database_url)
    svc = ServiceProcess(["run", "--follow", str(path)], env, tmp_path / "service.log")
    try:
        wait_for(lambda: stored_offsets(manifest, topic) == {0: path.stat().st_size}, 60, "the file applied")
        with path.open("ab") as f:  # a line counts once its newline is written
            f.write(b"\n".join(values[1000:]) + b"\n" + values[0][:10])
        wait_for(lambda: stored_offsets(manifest, topic) == {0: path.stat().st_size - 10}, 60, "the rest")
        assert svc.get("/readyz") == (200, "ok\n")
        applied, stale, rejected = svc.counted()
        assert (applied, rejected) == (2000, len(bad)) and applied + stale + rejected == len(values) + 1
        wait_for(lambda: local_site(tmp_path / "data") == model.expected(), 30, "the served sitemaps")
        code, out = svc.stop()
        assert code == 0 and "stopped: applied 2000" in out
    finally:
        svc.kill()
    assert manifest_versions(manifest) == model.versions
    got = letters(manifest)
    assert Counter(raw for _s, _r, raw in got) == Counter(bad)
    reasons = {**dict(MALFORMED), HUGE: "at most 1048576 allowed"}
    assert all(reasons[raw] in reason for _s, reason, raw in got)
    assert {s.split("@")[0] for s, _r, _raw in got} == {"events.jsonl"}

    # Restarted, it resumes at the stored byte offset: the unfinished line is applied once completed.
    svc = ServiceProcess(["run", "--follow", str(path)], env, tmp_path / "service.log")
    try:
        with path.open("ab") as f:
            f.write(values[0][10:] + b"\n")
        wait_for(lambda: stored_offsets(manifest, topic) == {0: path.stat().st_size}, 60, "the last line")
        wait_for(lambda: svc.counted() == (0, 1, 0), 10, "one stale event, nothing else")
        assert svc.stop()[0] == 0
    finally:
        svc.kill()
    manifest.close()


def test_event_to_served_within_the_publish_interval(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(event(1, 1)) + b"\n")
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", SITEMAPS_PUBLISH_INTERVAL="2")
    svc = ServiceProcess(["run", "--follow", str(path)], env, tmp_path / "service.log")
    try:
        wait_for(lambda: len(local_site(tmp_path / "data")) == 1, 30, "the first publish")
        started = time.monotonic()
        with path.open("ab") as f:
            f.write(orjson.dumps(event(2, 1)) + b"\n")
        wait_for(lambda: len(local_site(tmp_path / "data")) == 2, 30, "the new URL served", interval=0.05)
        # The target is the interval plus 1 s; the slack is for a busy test machine.
        assert time.monotonic() - started < 2 + 1 + 2
        assert svc.stop()[0] == 0
    finally:
        svc.kill()


def test_run_needs_a_source(tmp_path: Path) -> None:
    proc = cli("run", env={"SITEMAPS_DATA_DIR": str(tmp_path)}, check=False)
    assert proc.returncode == 2 and "give --follow FILE, or Kafka brokers" in proc.stderr


def test_a_batch_whose_partition_moved_on_is_rolled_back_whole(tmp_path: Path) -> None:
    manifest = Manifest.open(f"sqlite:///{tmp_path / 'm.db'}")
    store = OffsetStore(manifest)
    applier = Applier(manifest, Rules(frozenset({HOST})), Limits())
    items = [("t/0@0", orjson.dumps(event(1, 1))), ("t/0@1", b"junk")]
    applier.apply_raw(items, extra=store.writer({("t", 0): None}, {("t", 0): 2}))
    assert store.load("t") == {0: 2}
    # Another consumer applied offsets 0-1 meanwhile: this one, started at nothing stored, must not commit.
    with pytest.raises(OffsetConflict):
        applier.apply_raw(
            [("t/0@2", orjson.dumps(event(2, 1))), ("t/0@3", b"junk")],
            extra=store.writer({("t", 0): None}, {("t", 0): 4}),
        )
    assert store.load("t") == {0: 2}
    assert set(manifest_versions(manifest)) == {("authors", "1")} and len(letters(manifest)) == 1
    manifest.close()


def test_lease_election(kube_api: KubeAPIServer) -> None:
    settings = ServiceSettings(leader_election="lease", kube_api=kube_api.url, lease_name="pub", lease_namespace="web")
    first = open_leader(settings)
    assert isinstance(first, LeaseLeader)
    second = LeaseLeader(first.api, "pub", "web", "other", duration=1)
    first.duration = 1
    assert first.try_acquire() and not second.try_acquire()
    assert first.try_acquire()  # renewed
    assert kube_api.lease("pub", "web")["spec"]["holderIdentity"] == first.identity
    time.sleep(1.2)  # not renewed: it runs out, another may take over
    assert second.try_acquire() and not first.try_acquire()
    assert kube_api.lease("pub", "web")["spec"]["leaseTransitions"] == 1
    second.held_until = time.monotonic() + 10
    second.stop()  # releases at once
    assert first.try_acquire()
    first.start()
    wait_for(first.is_leader, 5, "the renewal thread to hold the lease")
    first.stop()
    assert not first.is_leader()


@pytest.mark.parametrize("failure", ["manifest down", "offsets moved on"])
def test_a_batch_read_ahead_is_applied_only_after_the_one_before(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The service reads the next batch while it applies one (the workers parse it meanwhile). When that one
    fails, the batch read ahead is dropped and read again from the stored offsets: every event once, in order."""
    values, _keys, model, bad = mixed_stream(1500, 200, seed=5)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(values) + b"\n")
    app = App(ServiceSettings(data_dir=tmp_path / "data", database_url=database_url, allowed_hosts=(HOST,), workers=2))
    app.applier.parallel_min, app.applier.parse_chunk = 50, 40  # batches of 100 go through the workers
    offsets = OffsetStore(app.manifest)
    real = app.applier.apply_raw
    calls = Counter[str]()

    def flaky(
        items: list[tuple[str, bytes]],
        extra: Callable[[Connection], None] | None = None,
        prepared: Prepared | None = None,
    ) -> CountsType:
        calls["apply"] += 1
        if calls["apply"] in (3, 7, 8):
            calls["failed"] += 1
            if failure == "manifest down":
                raise OperationalError("SELECT 1", {}, Exception("database is locked"))
            raise OffsetConflict("another consumer moved on")
        assert prepared is not None and prepared.tasks, "not read ahead"
        return real(items, extra, prepared)

    monkeypatch.setattr(app.applier, "apply_raw", flaky)
    monkeypatch.setattr(service_module, "MAX_BACKOFF", 0.1)
    service = Service(app, FileFollower(path, offsets), offsets, Leader(), batch_size=100)
    service.backoff = 0.05
    topic = f"file:{path.resolve()}"
    try:
        done = service.run(port=0, until=lambda: offsets.load(topic) == {0: path.stat().st_size})
        assert calls["failed"] == 3
        # A batch read ahead starts where the one before it ends: the offset fence never had to refuse one.
        conflicts = service.metrics.registry.get_sample_value("sitemaps_offset_conflicts_total")
        assert conflicts == (3 if failure == "offsets moved on" else 0)
        assert done.applied + done.stale + done.rejected == len(values)  # each event counted once
        assert done.rejected == len(bad)
        assert manifest_versions(app.manifest) == model.versions
        assert {loc: lastmod for _s, _k, loc, lastmod in app.manifest.reader.documents()} == model.expected()
    finally:
        app.close()
