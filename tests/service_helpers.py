"""Helpers for the change-feed service tests: the service as a subprocess, event streams with their ground
truth, and readers of what the manifest and the local store hold."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select as sql_select

from sitemap_keeper.incremental.offsets import OffsetStore
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.schema import dead_letters, documents
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.settings import Settings
from tests.factories import HOST
from tests.support import Model, read_site

BASE = "http://127.0.0.1:8080/sitemaps/"
SECTIONS = ("books", "authors", "series")


def service_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "500",
        "SITEMAPS_LOG_LEVEL": "INFO",
        "SITEMAPS_HTTP_HOST": "127.0.0.1",
        "SITEMAPS_HTTP_PORT": "0",
        "SITEMAPS_PUBLISH_INTERVAL": "1",
        "SITEMAPS_KAFKA_SESSION_TIMEOUT": "4",
        "SITEMAPS_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class ServiceProcess:
    """`sitemaps run ...` in a subprocess; the probes' port is read from its first line of output."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, timeout: float = 60) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sitemap_keeper", *args],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if "/metrics" not in line:
            self.kill()
            raise AssertionError(f"service did not start: {line!r}\n{self.log_tail()}")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, float]:
        """Every sample, by its name with labels: `sitemaps_events_total{result="applied"}`."""
        status, text = self.get("/metrics")
        assert status == 200
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def counted(self) -> tuple[int, int, int]:
        m = self.metrics()
        return tuple(
            int(m[f'sitemaps_events_total{{result="{r}"}}'])  # type: ignore[return-value]
            for r in ("applied", "stale", "rejected")
        )

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM; returns the exit code and what it printed after the first line."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


# -- event streams -------------------------------------------------------------------------------------------


def event(i: int, version: int | None, day: int = 1, op: str = "upsert") -> dict[str, Any]:
    section = SECTIONS[i % len(SECTIONS)]
    if op == "delete":
        return {"op": "delete", "section": section, "key": str(i), "version": version}
    ev: dict[str, Any] = {
        "op": "upsert",
        "section": section,
        "key": str(i),
        "loc": f"https://{HOST}/{section}/{i}",
        "lastmod": f"2024-06-{day:02d}T08:30:00+00:00",
        "version": version,
    }
    if i % 2:
        ev["images"] = [{"loc": f"https://cdn.{HOST}/{i}.jpg", "title": f"Cover {i} & <more>"}]
    return ev


def rebuild_with(manifest: Manifest, documents: int) -> None:
    """Rebuild the manifest from documents 0 to `documents` - 1, as `event(i, 1)` gives them."""
    settings = Settings(allowed_hosts=(HOST,))
    docs = [{k: v for k, v in event(i, 1).items() if k != "op"} for i in range(documents)]
    Rebuilder(manifest, settings.rules, settings.limits, workers=1).rebuild(row_chunks("test", docs))


def stream(n: int, docs: int, seed: int) -> list[dict[str, Any]]:
    """n events over `docs` documents, versions rising per document, about 8% deletions."""
    rnd = random.Random(seed)
    versions: dict[int, int] = {}
    out = []
    for step in range(n):
        i = rnd.randrange(docs)
        versions[i] = versions.get(i, 0) + 1
        out.append(event(i, versions[i], day=1 + step % 28, op="delete" if rnd.random() < 0.08 else "upsert"))
    return out


def key_of(ev: dict[str, Any]) -> bytes:
    return f"{ev['section']}/{ev['key']}".encode()


# (raw event, a part of the reason it is refused with)
MALFORMED: list[tuple[bytes, str]] = [
    (b"this is not json", "not valid JSON"),
    (b'{"section": "books", "key": "b1", "loc": "notaurl"}', "shorter than"),
    (b'{"section": "books", "key": "b2", "loc": "ftp://librer.io/x/y/z"}', "absolute http(s) URL"),
    (b'{"section": "books", "key": "b3", "loc": "https://evil.example/x"}', "not an allowed host"),
    (b'{"section": "books", "key": "b4\\u0007", "loc": "https://librer.io/x"}', "control characters"),
    (b'{"section": "books", "key": "b5", "loc": "https://librer.io/\\u0001x"}', "control characters"),
    (orjson.dumps({"section": "books", "key": "b6", "loc": f"https://{HOST}/" + "x" * 3000}), "at most 2048"),
    (
        orjson.dumps(
            {
                "section": "books",
                "key": "b7",
                "loc": f"https://{HOST}/b7",
                "images": [{"loc": f"https://{HOST}/i.jpg", "title": "t" * 5000}],
            }
        ),
        "at most 2048",
    ),
    (b'{"section": "Books!", "key": "b8", "loc": "https://librer.io/b8"}', "section must match"),
    (b'{"op": "explode", "section": "books", "key": "b9"}', "op must be"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b'{"section": "books", "key": "b10", "loc": "https://librer.io/b10", "version": -3}', "version must be"),
]


def mixed_stream(n: int, docs: int, seed: int) -> tuple[list[bytes], list[bytes | None], Model, list[bytes]]:
    """Valid events with malformed and stale ones spliced in: (values, keys, ground truth, the malformed)."""
    rnd = random.Random(seed)
    model = Model()
    values: list[bytes] = []
    keys: list[bytes | None] = []
    bad: list[bytes] = []
    history: list[dict[str, Any]] = []
    for ev in stream(n, docs, seed):
        model.event(ev)
        values.append(orjson.dumps(ev))
        keys.append(key_of(ev))
        history.append(ev)
        roll = rnd.random()
        if roll < 0.02:
            raw = MALFORMED[rnd.randrange(len(MALFORMED))][0]
            values.append(raw)
            keys.append(b"junk")
            bad.append(raw)
        elif roll < 0.04:  # an old version arriving late: ignored
            old = history[rnd.randrange(len(history))]
            assert not model.event(old)
            values.append(orjson.dumps(old))
            keys.append(key_of(old))
    return values, keys, model, bad


# -- what the manifest and the store hold --------------------------------------------------------------------


def manifest_versions(manifest: Manifest) -> dict[tuple[str, str], int]:
    with manifest.engine.connect() as conn:
        rows = conn.execute(sql_select(documents.c.section, documents.c.key, documents.c.version))
        return {(s, k): int(v) for s, k, v in rows if v is not None}


def letters(manifest: Manifest) -> list[tuple[str, str, bytes]]:
    with manifest.engine.connect() as conn:
        rows = conn.execute(
            sql_select(dead_letters.c.source, dead_letters.c.reason, dead_letters.c.raw).order_by(dead_letters.c.id)
        )
        return [(s, r, bytes(raw)) for s, r, raw in rows]


def stored_offsets(manifest: Manifest, topic: str) -> dict[int, int]:
    return OffsetStore(manifest).load(topic)


def local_site(data_dir: Path) -> dict[str, str | None]:
    """What the local router serves right now, read the way a crawler reads it."""
    return read_site(lambda name: (data_dir / "current" / name).read_bytes(), BASE).urls


def produce(broker: Any, topic: str, values: list[bytes], keys: list[bytes | None]) -> dict[int, int]:
    """Produce in batches (fast); returns partition -> end offset, from the acknowledgements (Tansu's
    end_offsets is wrong for batches: see tests/services/kafka.py)."""
    producer = broker.producer(linger_ms=20, batch_size=256 * 1024)
    try:
        futures = [producer.send(topic, value=v, key=k) for v, k in zip(values, keys, strict=True)]
        producer.flush(timeout=120)
        ends: dict[int, int] = {}
        for f in futures:
            md = f.get(timeout=30)
            ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
        return ends
    finally:
        producer.close(timeout=10)
