"""`sitemaps run` against a real Kafka-protocol broker (Tansu), as a subprocess, against the ground truth."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.leader import Leader
from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.incremental.service import Service
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.incremental.sources.kafka import KafkaConfig, KafkaSource
from sitemap_keeper.snapshot.manifest import Manifest
from tests.conftest import fresh_pg_database
from tests.service_helpers import (
    HOST,
    MALFORMED,
    ServiceProcess,
    letters,
    local_site,
    manifest_versions,
    mixed_stream,
    produce,
    service_env,
    stored_offsets,
)
from tests.services.kafka import TansuBroker, consume
from tests.services.ports import wait_for
from tests.services.s3 import MotoS3Server
from tests.support import Model
from tests.test_cli import Server

# The kill -9 test: 20k events, 4 kills by default; SITEMAPS_TEST_KILL_EVENTS=100000 for the full stream.
KILL_EVENTS = int(os.environ.get("SITEMAPS_TEST_KILL_EVENTS", "20000"))
KILLS = int(os.environ.get("SITEMAPS_TEST_KILLS", "4"))


def kafka_env(tmp_path: Path, database_url: str, broker: TansuBroker, topic: str, **extra: str) -> dict[str, str]:
    return service_env(
        tmp_path,
        database_url,
        SITEMAPS_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        SITEMAPS_KAFKA_TOPIC=topic,
        SITEMAPS_KAFKA_GROUP=f"group-{topic}",
        **extra,
    )


def test_events_from_kafka_are_served_exactly_once(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str
) -> None:
    topic, dlq = new_topic(3), new_topic(1)
    values, keys, model, bad = mixed_stream(3000, 400, seed=11)
    ends = produce(kafka_broker, topic, values, keys)
    env = kafka_env(tmp_path, database_url, kafka_broker, topic, SITEMAPS_KAFKA_DEAD_LETTER_TOPIC=dlq)
    manifest = Manifest.open(database_url)
    svc = ServiceProcess(["run"], env, tmp_path / "service.log")
    try:
        wait_for(lambda: stored_offsets(manifest, topic) == ends, 90, "every event applied")
        stale = len(values) - 3000 - len(bad)
        wait_for(lambda: svc.counted() == (3000, stale, len(bad)), 10, "the counters")
        server = Server(env)
        try:
            wait_for(lambda: server.site() == model.expected(), 30, "the served sitemaps to match")
        finally:
            server.stop()
        assert svc.get("/healthz")[0] == 200 and svc.get("/readyz") == (200, "ok\n")
        # the lag is absent until the source's first look at the end offsets (every 5 s), then 0 here
        wait_for(lambda: svc.metrics().get("sitemaps_consumer_lag") == 0, 15, "the lag to be known")
        m = svc.metrics()
        assert m['sitemaps_publishes_total{result="published"}'] >= 1
        assert any(k.startswith("sitemaps_live_generation{") for k in m)
        started = time.monotonic()
        code, out = svc.stop()
        assert code == 0 and time.monotonic() - started < 15 and "stopped: applied 3000" in out
    finally:
        svc.kill()

    # Every malformed event is dead-lettered once, with its reason and raw bytes, also on the topic.
    reasons = dict(MALFORMED)
    got = letters(manifest)
    assert Counter(raw for _s, _r, raw in got) == Counter(bad)
    for source, reason, raw in got:
        assert source.startswith(f"kafka:{topic}/") and reasons[raw] in reason, (raw, reason)
    consumer = kafka_broker.consumer(dlq)
    forwarded = consume(consumer, len(bad))
    consumer.close()
    assert Counter(r.value for r in forwarded) == Counter(bad)
    assert all(dict(r.headers)["sitemaps-reason"] for r in forwarded)

    # Offsets are committed to Kafka too, so the usual tools show the lag.
    group = kafka_broker.consumer(group_id=f"group-{topic}")
    assert {p: group.committed(TopicPartition(topic, p)) for p in ends} == ends
    group.close()

    # A restart resumes after the last applied event: only new events are applied.
    more, more_keys, _m, _b = mixed_stream(200, 50, seed=12)
    svc = ServiceProcess(["run"], env, tmp_path / "service.log")
    try:
        ends2 = produce(kafka_broker, topic, more, more_keys)
        wait_for(lambda: stored_offsets(manifest, topic) == ends2, 60, "the new events applied")
        wait_for(lambda: sum(svc.counted()) == len(more), 10, "the counters")
        assert svc.stop()[0] == 0
    finally:
        svc.kill()
    manifest.close()


def produce_over_time(
    broker: TansuBroker, topic: str, values: list[bytes], keys: list[bytes | None], chunks: int, seconds: float
) -> tuple[threading.Thread, dict[int, int]]:
    """Produce in `chunks` spread over `seconds`, in a thread; the dict fills with the end offsets."""
    ends: dict[int, int] = {}
    size = -(-len(values) // chunks)

    def run() -> None:
        for i in range(0, len(values), size):
            for p, end in produce(broker, topic, values[i : i + size], keys[i : i + size]).items():
                ends[p] = max(ends.get(p, 0), end)
            time.sleep(seconds / chunks)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ends


def check_exactly_once(
    manifest: Manifest, topic: str, ends: dict[int, int], model: Model, bad: list[bytes], data_dir: Path
) -> None:
    """Nothing lost (versions and served URLs equal the ground truth), nothing applied twice (each
    malformed event has exactly one dead-letter row: a batch applied twice would have left two)."""
    assert stored_offsets(manifest, topic) == ends
    assert manifest_versions(manifest) == {k: v for k, v in model.versions.items()}
    got = letters(manifest)
    assert len({s for s, _r, _raw in got}) == len(got), "an event was dead-lettered twice"
    assert Counter(raw for _s, _r, raw in got) == Counter(bad)
    wait_for(lambda: local_site(data_dir) == model.expected(), 30, "the served sitemaps to match")


def test_kill_9_at_random_moments_loses_nothing_and_applies_nothing_twice(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str
) -> None:
    rnd = random.Random(5)
    topic = new_topic(3)
    values, keys, model, bad = mixed_stream(KILL_EVENTS, KILL_EVENTS // 10, seed=7)
    # A short session: a killed member's partitions go to its successor sooner.
    env = kafka_env(
        tmp_path, database_url, kafka_broker, topic, SITEMAPS_BATCH_SIZE="1000", SITEMAPS_KAFKA_SESSION_TIMEOUT="2"
    )
    manifest = Manifest.open(database_url)
    producer, ends = produce_over_time(kafka_broker, topic, values, keys, chunks=10, seconds=KILL_EVENTS / 2000)
    log = tmp_path / "service.log"
    for _ in range(KILLS):
        svc = ServiceProcess(["run"], env, log)
        try:
            # Once it applies (the group join takes seconds), kill it mid-batch, mid-commit or mid-publish.
            with contextlib.suppress(TimeoutError):  # (or it may have caught up already)
                wait_for(lambda: svc.metrics()["sitemaps_batches_total"] > 0, 20, "events")  # noqa: B023
            time.sleep(rnd.uniform(0, 1.5))
        finally:
            svc.kill()
    producer.join()
    svc = ServiceProcess(["run"], env, log)
    try:
        wait_for(lambda: stored_offsets(manifest, topic) == ends, 120, "every event applied")
        check_exactly_once(manifest, topic, ends, model, bad, tmp_path / "data")
        assert svc.stop()[0] == 0
    finally:
        svc.kill()
        manifest.close()


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    yield from fresh_pg_database()


def test_two_replicas_both_apply_and_one_publishes_at_a_time(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, pg_database_url: str
) -> None:
    """PostgreSQL: several processes share the manifest (SQLite means one process)."""
    database_url = pg_database_url
    topic = new_topic(4)
    values, keys, model, bad = mixed_stream(6000, 800, seed=21)
    env = kafka_env(tmp_path, database_url, kafka_broker, topic, SITEMAPS_BATCH_SIZE="500")
    manifest = Manifest.open(database_url)
    replicas = [ServiceProcess(["run"], env, tmp_path / f"replica{i}.log") for i in range(2)]
    try:
        time.sleep(4)  # both in the group before the events come
        producer, ends = produce_over_time(kafka_broker, topic, values, keys, chunks=12, seconds=8)
        producer.join()
        wait_for(lambda: stored_offsets(manifest, topic) == ends, 90, "every event applied")
        check_exactly_once(manifest, topic, ends, model, bad, tmp_path / "data")
        applied = [r.counted()[0] for r in replicas]
        assert all(applied) and sum(applied) == 6000, applied
        published = [r.metrics()['sitemaps_publishes_total{result="published"}'] for r in replicas]
        assert sum(published) >= 2
        for r in replicas:
            assert r.stop()[0] == 0
    finally:
        for r in replicas:
            r.kill()
    # One publisher at a time: no two publishes overlap, and each built on the one before it.
    gens = sorted((g for g in manifest.generations.all() if g.published_at), key=lambda g: g.created_at)
    for before, after in itertools.pairwise(gens):
        assert before.published_at is not None and before.published_at <= after.created_at
        assert after.base_id == before.id
    manifest.close()


def test_broker_stopped_and_restarted_mid_stream(moto_s3: MotoS3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket("tansu")
    # Tansu keeps topics in S3 here (memory storage would lose them all on a stop).
    broker = TansuBroker(
        storage_engine=f"s3://{bucket}/",
        env={
            "AWS_ENDPOINT": moto_s3.url,
            "AWS_ACCESS_KEY_ID": moto_s3.access_key,
            "AWS_SECRET_ACCESS_KEY": moto_s3.secret_key,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    broker.start()
    database_url = f"sqlite:///{tmp_path / 'manifest.db'}"
    manifest = Manifest.open(database_url)
    try:
        topic = broker.create_topic(None, 2)
        values, keys, model, bad = mixed_stream(4000, 500, seed=31)
        half = len(values) // 2
        first = produce(broker, topic, values[:half], keys[:half])
        env = kafka_env(tmp_path, database_url, broker, topic)
        svc = ServiceProcess(["run"], env, tmp_path / "service.log")
        try:
            wait_for(lambda: stored_offsets(manifest, topic) == first, 60, "the first half applied")
            broker.stop()
            wait_for(lambda: svc.get("/readyz")[0] == 503, 30, "not ready while the broker is down")
            assert svc.get("/healthz")[0] == 200
            time.sleep(3)  # down for a while: the service backs off and retries
            broker.start()
            ends = produce(broker, topic, values[half:], keys[half:])
            wait_for(lambda: stored_offsets(manifest, topic) == ends, 90, "the second half applied")
            wait_for(lambda: svc.get("/readyz")[0] == 200, 30, "ready again")
            assert svc.proc.poll() is None  # recovered on its own, no restart
            check_exactly_once(manifest, topic, ends, model, bad, tmp_path / "data")
            assert svc.stop()[0] == 0
        finally:
            svc.kill()
    finally:
        manifest.close()
        broker.close()


def test_a_rebuild_longer_than_the_poll_interval_keeps_the_consumer_in_its_group(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Events wait while a rebuild runs; the consumer goes on polling (its partitions paused), so Kafka does
    not take it out of its group after max.poll.interval, here 5 s instead of 5 minutes."""
    topic = new_topic(1)
    values, keys, model, _bad = mixed_stream(300, 60, seed=23)
    half = len(values) // 2
    app = App(
        ServiceSettings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            allowed_hosts=(HOST,),
            publish_interval=3600,
            prune_interval=3600,
            http_host="127.0.0.1",
            http_port=0,
        )
    )
    offsets = OffsetStore(app.manifest)
    config = KafkaConfig(kafka_broker.bootstrap, topic, f"group-{topic}", session_timeout=4, max_poll_interval=5)
    source = KafkaSource(config, offsets, max_records=100)
    revoked: list[set[TopicPartition]] = []
    forget = source.forget
    # (kafka-python revokes an empty set on the first join)
    source.forget = lambda parts: (parts and revoked.append(set(parts)), forget(parts))[1]  # type: ignore[method-assign]
    service = Service(app, source, offsets, Leader(), batch_size=100)
    thread = threading.Thread(target=service.run, kwargs={"port": 0}, daemon=True)
    thread.start()
    try:
        first = produce(kafka_broker, topic, values[:half], keys[:half])
        wait_for(lambda: stored_offsets(app.manifest, topic) == first, 90, "the first half applied")
        with app.manifest.locks.rebuild(), caplog.at_level(logging.WARNING):
            ends = produce(kafka_broker, topic, values[half:], keys[half:])
            wait_for(lambda: service.paused, 30, "the service to wait for the rebuild")
            time.sleep(12)  # over twice max.poll.interval
            assert stored_offsets(app.manifest, topic) == first, "an event was applied during the rebuild"
        wait_for(lambda: stored_offsets(app.manifest, topic) == ends, 60, "the second half applied after it")
        assert not [r for r in caplog.records if "poll timeout has expired" in r.getMessage()]
        assert revoked == [], "the consumer left its group and rejoined"
        assert manifest_versions(app.manifest) == dict(model.versions)
    finally:
        service.stopping.set()
        thread.join(60)
        app.close()
