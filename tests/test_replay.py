"""`sitemaps replay`: the manifest rebuilt from the topic, a full generation published, and on from there."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.metrics import Metrics
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.scheduler import Timers
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.settings import Settings
from tests.service_helpers import (
    BASE,
    HOST,
    ServiceProcess,
    event,
    key_of,
    letters,
    local_site,
    manifest_versions,
    mixed_stream,
    service_env,
    stored_offsets,
)
from tests.services.kafka import TansuBroker
from tests.services.ports import wait_for
from tests.support import Model, cli
from tests.test_kafka import kafka_env
from tests.test_rebuild_lock import catalog, open_app, rebuild, stalling


def test_replay_rebuilds_the_manifest_from_the_topic(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str
) -> None:
    topic = new_topic(2)
    values, keys, model, bad = mixed_stream(300, 60, seed=41)
    # One record per produce call: Tansu's end offsets are exact only then (tests/services/kafka.py).
    md = kafka_broker.produce(topic, values, keys)
    ends = {p: max(m.offset for m in md if m.partition == p) + 1 for p in {m.partition for m in md}}
    env = kafka_env(tmp_path, database_url, kafka_broker, topic)
    manifest = Manifest.open(database_url)
    # A manifest that holds something else entirely: the replay starts from an empty one.
    path = tmp_path / "other.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event(i, 1) | {"key": f"x{i}"}) + b"\n" for i in range(50)))
    cli("apply", str(path), env=env)
    out = cli("replay", "--exit", env=env).stdout
    assert f"replayed: applied 300, stale {len(values) - 300 - len(bad)}, rejected {len(bad)}" in out
    assert "published generation" in out
    assert stored_offsets(manifest, topic) == ends
    assert manifest_versions(manifest) == model.versions
    assert local_site(tmp_path / "data") == model.expected()
    assert Counter(raw for _s, _r, raw in letters(manifest)) == Counter(bad)

    # Then it goes on as `sitemaps run`, from where the replay stopped.
    svc = ServiceProcess(["replay"], env, tmp_path / "replay.log")
    try:
        wait_for(lambda: svc.get("/readyz")[0] == 200, 30, "the replay to be under way")
        more = [event(1000 + i, 1) for i in range(20)]
        for ev in more:
            model.event(ev)
        for m in kafka_broker.produce(topic, [orjson.dumps(e) for e in more], [key_of(e) for e in more]):
            ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
        wait_for(lambda: stored_offsets(manifest, topic) == ends, 60, "the new events applied")
        wait_for(lambda: local_site(tmp_path / "data") == model.expected(), 30, "the served sitemaps")
        code, out = svc.stop()
        assert code == 0 and "stopped: applied 20, stale 0, rejected 0" in out
    finally:
        svc.kill()
    manifest.close()


def test_replay_since_a_time(kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(1)
    old = [event(i, 1) for i in range(10)]
    kafka_broker.produce(topic, [orjson.dumps(e) for e in old], [key_of(e) for e in old])
    time.sleep(1.5)
    since = time.time()
    new = [event(100 + i, 1) for i in range(10)]
    kafka_broker.produce(topic, [orjson.dumps(e) for e in new], [key_of(e) for e in new])
    model = Model()
    for ev in new:
        model.event(ev)
    env = kafka_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", kafka_broker, topic)
    out = cli("replay", "--exit", "--since", f"{since:.3f}", env=env).stdout
    assert "replayed: applied 10, stale 0, rejected 0" in out
    assert local_site(tmp_path / "data") == model.expected()
    bad = cli("replay", "--exit", "--since", "yesterday", env=env, check=False)
    assert bad.returncode == 1 and "--since must be an ISO 8601 time" in bad.stderr


def test_a_replay_that_has_not_caught_up_is_never_published(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", allowed_hosts=(HOST,))
    app = App(settings)
    store = OffsetStore(app.manifest)
    with app.manifest.write() as conn:  # a replay from 0 to 100, killed at 40
        store.reset(conn, "docs", {0: 0}, {0: 100})
    app.applier.apply_raw(
        [("docs/0@0", orjson.dumps(event(1, 1)))], extra=store.writer({("docs", 0): 0}, {("docs", 0): 40})
    )
    metrics = Metrics()
    timers = Timers(app, metrics, Leader(), store)
    timers.publish()
    assert app.router.current() is None and metrics.publishes.labels("skipped")._value.get() == 1
    app.applier.apply_raw([], extra=store.writer({("docs", 0): 40}, {("docs", 0): 100}))
    timers.publish()
    assert app.router.current() is not None and not store.replay_pending()
    assert store.load("replay:docs") == {}
    app.close()


def test_a_replay_of_a_topic_that_lost_most_documents_does_not_replace_the_site(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str
) -> None:
    """A topic with time- or size-based retention holds only its recent events, and its replay rebuilds that
    fraction of the site: the replay's full publish refuses it, and so does the service's timer after it."""
    topic = new_topic(1)
    env = kafka_env(tmp_path, database_url, kafka_broker, topic)
    path = tmp_path / "site.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event(i, 1)) + b"\n" for i in range(20)))
    cli("apply", str(path), env=env)
    cli("publish", env=env)
    site = local_site(tmp_path / "data")
    assert len(site) == 20
    recent = [event(i, 2) for i in range(5)]  # all the topic still holds
    kafka_broker.produce(topic, [orjson.dumps(e) for e in recent], [key_of(e) for e in recent])
    proc = cli("replay", "--exit", env=env, check=False)
    last = proc.stderr.splitlines()[-1]
    assert (
        proc.returncode == 1
        and last.startswith("error: generation ")
        and ("serves 20 URLs and this manifest holds 5: publishing would remove 15 of them") in last
    ), proc
    assert local_site(tmp_path / "data") == site
    app = App(
        Settings(
            data_dir=tmp_path / "data", database_url=database_url, base_url=BASE, allowed_hosts=(HOST,), max_urls=500
        )
    )
    try:
        metrics = Metrics()
        Timers(app, metrics, Leader(), OffsetStore(app.manifest)).publish()  # what `sitemaps run` would do
        assert metrics.publishes.labels("failed")._value.get() == 1 and local_site(tmp_path / "data") == site
    finally:
        app.close()
    # On purpose: the operator accepts the smaller site.
    cli("publish", "--full", "--max-shrink", "1", env=env)
    model = Model()
    for ev in recent:
        model.event(ev)
    assert local_site(tmp_path / "data") == model.expected()


def test_replay_needs_kafka(tmp_path: Path) -> None:
    proc = cli("replay", env=service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), check=False)
    assert proc.returncode == 2 and "replay reads Kafka" in proc.stderr


def test_a_replay_is_refused_while_a_rebuild_loads(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str
) -> None:
    """The rebuild's swap would bring back what the replay's reset empties, under the replay's offsets."""
    topic = new_topic(1)
    ev = event(1, 9)
    kafka_broker.produce(topic, [orjson.dumps(ev)], [key_of(ev)])
    env = kafka_env(tmp_path, database_url, kafka_broker, topic)
    app = open_app(tmp_path, database_url)
    outcome: dict[str, Any] = {}

    def during() -> None:
        outcome["replay"] = cli("replay", "--exit", env=env, check=False, timeout=60)  # without the check: it waits

    try:
        rebuild(app, stalling(catalog(2), 10, during))
        replay = outcome["replay"]
        assert (replay.returncode, replay.stderr.splitlines()[-1]) == (
            1,
            "error: a rebuild is running on this manifest: replay once it has swapped its tables in",
        )
        assert set(manifest_versions(app.manifest).values()) == {2}  # the rebuild's, untouched by the replay
        assert stored_offsets(app.manifest, topic) == {}
        out = cli("replay", "--exit", env=env).stdout  # once the rebuild is done, the replay runs
        assert "replayed: applied 1" in out
        assert manifest_versions(app.manifest) == {(ev["section"], ev["key"]): 9}
    finally:
        app.close()
