"""Progress of the commands that can run long, off a terminal: a plain line every SITEMAPS_PROGRESS_INTERVAL
seconds on standard error, reaching 100% of what there was to do; standard output keeps only the result."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson

from tests.service_helpers import event, key_of
from tests.services.kafka import TansuBroker
from tests.support import cli
from tests.test_kafka import kafka_env

HOST = "librer.io"


def lines(stderr: str, label: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{label}: ")]


def last_share(stderr: str, label: str) -> tuple[float, int]:
    found = lines(stderr, label)
    assert found, stderr
    m = re.search(r"(\d+\.\d)% of ([\d,]+)", found[-1])
    assert m, found[-1]
    return float(m.group(1)), int(m.group(2).replace(",", ""))


def test_publish_apply_and_verify_show_progress(tmp_path: Path, database_url: str) -> None:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_MAX_URLS": "10",
        "SITEMAPS_PROGRESS_INTERVAL": "0.000001",
        "SITEMAPS_WORKERS": "1",
    }
    source = tmp_path / "docs.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in event(i, 1).items() if k != "op"}) + b"\n" for i in range(95))
    )
    cli("rebuild", "--source", str(source), "--no-publish", env=env)
    proc = cli("publish", "--full", "--json", env=env)
    rendered = json.loads(proc.stdout)["rendered"]
    assert rendered >= 10 and last_share(proc.stderr, "publishing (shards)") == (100.0, rendered)
    changes = tmp_path / "changes.jsonl"
    changes.write_bytes(b"".join(orjson.dumps(event(i, 2, day=3)) + b"\n" for i in range(40)))
    proc = cli("apply", str(changes), env=env)
    assert last_share(proc.stderr, "applying (bytes)") == (100.0, changes.stat().st_size)
    proc = cli("verify", "--deep", env=env)
    share, total = last_share(proc.stderr, "verifying (bytes)")
    assert share == 100.0 and total > 1000 and proc.stdout.startswith("generation ")


def test_replay_shows_progress(kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path) -> None:
    topic = new_topic(2)
    events = [event(i, 1) for i in range(60)]
    values = [orjson.dumps(e) for e in events]
    kafka_broker.produce(topic, values, [key_of(e) for e in events])
    env = {
        **kafka_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", kafka_broker, topic),
        "SITEMAPS_PROGRESS_INTERVAL": "0.000001",
    }
    proc = cli("replay", "--exit", env=env)
    assert "replayed: applied 60" in proc.stdout
    assert last_share(proc.stderr, "replaying (events)") == (100.0, 60)
    assert last_share(proc.stderr, "publishing (shards)")[0] == 100.0
