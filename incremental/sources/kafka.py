"""Kafka as the event source, with kafka-python.

Positions live in the manifest (incremental/offsets.py), not in Kafka: on every partition assignment, and
after any batch that did not commit, the consumer seeks to the stored offsets (the beginning of a partition
when none is stored). Offsets are also committed to Kafka after each batch, only so that lag shows in the
usual tools. Producers key messages by document (`<section>/<key>`), so each document's events stay in one
partition, in order.

In group mode replicas share the partitions through the consumer group; in assigned mode (replay) this
consumer reads every partition by itself.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.record.util import crc32c_c
from kafka.structs import OffsetAndMetadata

from sitemap_keeper.incremental.offsets import OffsetStore, Position
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.incremental.sources.base import EventBatch, EventSource

log = logging.getLogger(__name__)

TOPIC_NAMES_RE = re.compile(r"[\sA-Za-z0-9._,-]+")  # Kafka's topic name characters, commas and blanks
LINGER = 0.2  # once events flow, wait this long for more to fill a batch
MAX_BACKOFF = 30.0
if not logging.getLogger("kafka").level:
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO is a line per connection step


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    topic: str = "documents"
    group: str = "sitemaps"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    dead_letter_topic: str | None = None
    session_timeout: float = 10.0
    max_poll_interval: float = 300.0  # Kafka's default; a consumer idling for a rebuild polls all the same
    topics: tuple[str, ...] = ()  # several topics instead of `topic`
    topic_pattern: str | None = None  # or every topic whose whole name matches this regular expression

    @classmethod
    def from_settings(cls, s: ServiceSettings) -> KafkaConfig:
        if not s.kafka_bootstrap_servers:
            raise ValueError("SITEMAPS_KAFKA_BOOTSTRAP_SERVERS is not set")
        return cls(
            s.kafka_bootstrap_servers,
            s.kafka_topic,
            s.kafka_group,
            s.kafka_security_protocol,
            s.kafka_sasl_mechanism,
            s.kafka_sasl_username,
            s.kafka_sasl_password,
            s.kafka_ssl_cafile,
            s.kafka_dead_letter_topic,
            s.kafka_session_timeout,
            **topics_setting(s.kafka_topics),
        )

    @property
    def names(self) -> str:
        """The topics, as logs and messages name them."""
        return self.topic_pattern or ",".join(self.topics or (self.topic,))

    def subscribe(self, consumer: KafkaConsumer, listener: ConsumerRebalanceListener) -> None:
        if self.topic_pattern:
            consumer.subscribe(pattern=f"^(?:{self.topic_pattern})$", listener=listener)
        else:
            consumer.subscribe(list(self.topics or (self.topic,)), listener=listener)

    def partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        """Every partition of the topics (of those matching the pattern, when it is one)."""
        if self.topic_pattern:
            names = sorted(t for t in consumer.topics() if re.fullmatch(self.topic_pattern, t))
        else:
            names = list(self.topics or (self.topic,))
        return [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]

    def client(self) -> dict[str, Any]:
        """Settings common to consumers and producers (the password is passed, never logged)."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": [b.strip() for b in self.bootstrap_servers.split(",") if b.strip()],
            "security_protocol": self.security_protocol,
            "client_id": f"sitemaps-{socket.gethostname()}",
            "request_timeout_ms": max(30_000, int(self.session_timeout * 1000) + 5000),
        }
        if self.sasl_mechanism:
            cfg.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.ssl_cafile:
            cfg["ssl_cafile"] = self.ssl_cafile
        return cfg

    def consumer(self, group: bool, max_records: int) -> dict[str, Any]:
        session = int(self.session_timeout * 1000)
        return {
            **self.client(),
            "group_id": self.group if group else None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": session,
            "heartbeat_interval_ms": max(100, session // 4),
            "max_poll_records": max_records,
            "max_poll_interval_ms": int(self.max_poll_interval * 1000),
            "metadata_max_age_ms": 10_000,  # notice a topic created after start, or new partitions, soon
        }


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.source.forget(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self.source.seek_stored(assigned)
        except Exception:  # kafka-python would swallow it: leave a note to seek before the next batch
            log.exception("could not read the stored offsets of %s; will retry", sorted(assigned))
            self.source.must_rewind = True


class KafkaSource(EventSource):
    def __init__(self, config: KafkaConfig, store: OffsetStore, group: bool = True, max_records: int = 10_000) -> None:
        self.config = config
        self.store = store
        self.group = group
        self.max_records = max_records
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.expected: dict[Position, int | None] = {}  # what the manifest holds, per assigned partition
        self.next: dict[TopicPartition, int] = {}  # the next offset this consumer will hand out
        self.pending: dict[TopicPartition, list[ConsumerRecord]] = {}
        self.must_rewind = False
        self.backoff = 1.0
        self.retry_at = 0.0
        self.status = (False, "connecting to Kafka")
        self.dead_letter_topic = config.dead_letter_topic

    # -- connection -----------------------------------------------------------------------------------------

    def _connect(self) -> KafkaConsumer | None:
        if self.consumer is not None or time.monotonic() < self.retry_at:
            return self.consumer
        try:
            consumer = KafkaConsumer(**self.config.consumer(self.group, self.max_records))
        except KafkaError as exc:
            self._failed(f"cannot reach Kafka at {self.config.bootstrap_servers}: {exc!r}")
            return None
        self.consumer = consumer
        if self.group:
            self.config.subscribe(consumer, _Listener(self))
        else:
            consumer.assign(self.config.partitions(consumer))
            self.must_rewind = True
        self.backoff = 1.0
        self.status = (True, "ok")
        log.info(
            "consuming %s from %s (%s)",
            self.config.names,
            self.config.bootstrap_servers,
            f"group {self.config.group}" if self.group else "every partition",
        )
        if crc32c_c is None:
            log.warning(
                "the crc32c package is not installed: kafka-python checks record CRCs in pure Python, "
                "which makes consuming about 3 times slower (pip install crc32c)"
            )
        return consumer

    def _failed(self, why: str) -> None:
        self.status = (False, why)
        log.warning("%s; retrying in %.0fs", why, self.backoff)
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=10)
            self.producer = None
        if self.consumer is not None:
            self.consumer.close(autocommit=False, timeout_ms=5000)  # bounded: the broker may be down
            self.consumer = None

    # -- positions ------------------------------------------------------------------------------------------

    def seek_stored(self, partitions: set[TopicPartition]) -> None:
        """Seek to the offsets the manifest holds (the beginning where it holds none)."""
        assert self.consumer is not None
        stored = {t: self.store.load(t) for t in {tp.topic for tp in partitions}}
        for tp in sorted(partitions):
            self.pending.pop(tp, None)
            offset = stored[tp.topic].get(tp.partition)
            self.expected[(tp.topic, tp.partition)] = offset
            if offset is None:
                self.consumer.seek_to_beginning(tp)
                self.next.pop(tp, None)
            else:
                self.consumer.seek(tp, offset)
                self.next[tp] = offset
        log.info(
            "positions of %s: %s",
            self.config.names,
            {
                f"{tp.topic}/{tp.partition}": stored[tp.topic].get(tp.partition, "beginning")
                for tp in sorted(partitions)
            },
        )

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.pending.pop(tp, None)
            self.next.pop(tp, None)
            self.expected.pop((tp.topic, tp.partition), None)

    def rewind(self) -> None:
        self.must_rewind = True

    def positions(self) -> dict[int, int]:
        """partition -> next offset to hand out, where known."""
        return {tp.partition: o for tp, o in self.next.items()}

    # -- events ---------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout: float) -> EventBatch | None:
        consumer = self._connect()
        if consumer is None:
            time.sleep(min(timeout, max(0.0, self.retry_at - time.monotonic())))
            return None
        try:
            paused = consumer.paused()  # by idle()
            if paused:
                consumer.resume(*paused)
            if self.must_rewind:
                self.seek_stored(consumer.assignment())
                self.must_rewind = False
            self._fill(consumer, max_records, timeout)
        except KafkaError as exc:
            log.warning("Kafka error: %r; reconnecting", exc)
            self.pending.clear()
            self.close()
            self._failed(f"Kafka error: {exc!r}")
            return None
        batch = self._take()
        self._follow_lag(consumer)
        return batch

    def _follow_lag(self, consumer: KafkaConsumer) -> None:
        """The lag from the high watermarks the fetches brought (no request), once every assigned partition
        has one: `check` asks the brokers only every few seconds."""
        marks = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
        if marks and None not in marks.values():
            self.lag = sum(max(0, marks[tp] - o) for tp, o in self.next.items() if tp in marks)

    def idle(self) -> None:
        """Poll with every partition paused. A consumer that stops polling for longer than max.poll.interval
        (5 minutes by default) is taken out of its group, and a rebuild of a large site may take longer."""
        consumer = self.consumer
        if consumer is None:
            return
        try:
            consumer.pause(*consumer.assignment())
            consumer.poll(timeout_ms=0)  # records of a partition assigned meanwhile (not paused) are dropped
        except KafkaError as exc:
            log.warning("Kafka error while idle: %r", exc)
        self.pending.clear()
        self.must_rewind = True  # and read again from the stored offsets, as everything else

    def _fill(self, consumer: KafkaConsumer, max_records: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        count = 0
        while count < max_records:
            left = deadline - time.monotonic()
            got = consumer.poll(timeout_ms=max(0, int(left * 1000)), max_records=max_records - count)
            for tp, records in got.items():
                self.pending.setdefault(tp, []).extend(records)
            count = sum(len(r) for r in self.pending.values())
            if (not got and count) or time.monotonic() >= deadline:
                return
            if count:
                deadline = min(deadline, time.monotonic() + LINGER)

    def _take(self) -> EventBatch | None:
        if not self.pending:
            return None
        batch = EventBatch()
        for tp, records in self.pending.items():
            pos = (tp.topic, tp.partition)
            # Where the last batch handed out ends (the service reads ahead), else what the manifest holds.
            batch.start[pos] = self.next[tp] if tp in self.next else self.expected.get(pos)
            batch.end[pos] = records[-1].offset + 1
            self.next[tp] = records[-1].offset + 1
            for r in records:
                label = f"kafka:{tp.topic}/{tp.partition}@{r.offset}"
                batch.items.append((label, r.value if r.value is not None else b""))
                batch.keys[label] = r.key
        self.pending = {}
        return batch

    def committed(self, batch: EventBatch) -> None:
        self.expected.update(batch.end)
        if self.group and self.consumer is not None:
            offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in batch.end.items()}
            self.consumer.commit_async(offsets, callback=_commit_done)

    def dead_letter(self, letters: list[tuple[str, str, bytes, bytes | None]]) -> None:
        topic = self.config.dead_letter_topic
        if not topic or not letters:
            return
        try:
            if self.producer is None:
                self.producer = KafkaProducer(**self.config.client(), acks="all")
            for label, reason, raw, key in letters:
                self.producer.send(
                    topic,
                    value=raw,
                    key=key,
                    headers=[("sitemaps-reason", reason.encode()), ("sitemaps-source", label.encode())],
                )
            self.producer.flush(timeout=10)
        except KafkaError as exc:  # the manifest's dead-letter table has them all the same
            log.warning("could not send %d dead letters to %s: %r", len(letters), topic, exc)

    # -- health ---------------------------------------------------------------------------------------------

    def check(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return  # _failed() has said why
        parts = sorted(consumer.assignment()) or [TopicPartition((self.config.topics or (self.config.topic,))[0], 0)]
        try:
            if consumer.assignment() or not self.config.topic_pattern:
                ends = consumer.end_offsets(parts, timeout_ms=5000)
            else:  # nothing assigned yet and no topic named: ask the brokers for their topics instead
                consumer.topics()
                ends = {}
        except KafkaError as exc:
            self.status = (False, f"Kafka unreachable: {exc!r}")
            return
        self.status = (True, "ok")
        known = [(tp, o) for tp, o in self.next.items() if tp in ends]
        self.lag = sum(max(0, ends[tp] - o) for tp, o in known) if consumer.assignment() else 0


def topics_setting(value: str | None) -> dict[str, Any]:
    """SITEMAPS_KAFKA_TOPICS: names separated by commas, or a regular expression (any other character in it)."""
    if not value or not value.strip():
        return {}
    if TOPIC_NAMES_RE.fullmatch(value):
        return {"topics": tuple(t.strip() for t in value.split(",") if t.strip())}
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"SITEMAPS_KAFKA_TOPICS is neither topic names nor a regular expression: {exc}") from None
    return {"topic_pattern": value}


def _commit_done(offsets: dict[TopicPartition, OffsetAndMetadata], response: object) -> None:
    if isinstance(response, Exception):
        log.debug("committing offsets to Kafka failed (they are safe in the manifest): %r", response)
