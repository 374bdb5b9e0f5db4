"""IndexNow against a local HTTP server that records every POST and answers from a script."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot import indexnow
from sitemap_keeper.snapshot.indexnow import IndexNowConfig, Submitter
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.serve import make_server, serve_in_thread
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.status import status
from sitemap_keeper.snapshot.verify import verify_generation
from tests.factories import HOST, doc, jsonl
from tests.support import cli
from tests.test_diff import BASE, apply, cli_env, publish, run

KEY = "sitemaps-Test-key-0123"
OTHER = "news.librer.io"


@dataclass
class Recorder:
    """An IndexNow endpoint: records each POST, answers the next scripted (status, headers), else 200."""

    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    posts: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""

    def urls(self) -> list[str]:
        return [u for p in self.posts for u in p["urlList"]]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left: expected here


Answer = int | tuple[int, dict[str, str]]  # a status, or a status with headers
Endpoint = Callable[..., Recorder]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """Start recording endpoints: `endpoint(*answers, delay=0.0)`; all are stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(*answers: Answer, delay: float = 0.0) -> Recorder:
        rec = Recorder(deque(a if isinstance(a, tuple) else (a, {}) for a in answers), delay=delay)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    rec.posts.append({"path": self.path, "type": self.headers["Content-Type"], **body})
                    status, headers = rec.script.popleft() if rec.script else (200, {})
                time.sleep(rec.delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = _QuietServer(("127.0.0.1", 0), Handler)
        serve_in_thread(server)
        servers.append(server)
        rec.url = f"http://127.0.0.1:{server.server_port}/indexnow"
        return rec

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def make_app(tmp_path: Path, database_url: str, *urls: str, timeout: float = 60.0) -> App:
    return App(
        Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            base_url=BASE,
            allowed_hosts=(HOST, OTHER),
            workers=1,
            indexnow_key=KEY,
            indexnow_endpoints=urls,
            indexnow_timeout=timeout,
        )
    )


def test_added_and_changed_urls_are_posted_in_batches(tmp_path: Path, database_url: str, endpoint: Endpoint) -> None:
    rec = endpoint()
    app = make_app(tmp_path, database_url, rec.url)
    try:
        apply(app, [doc(i) for i in range(100)])
        first = publish(app)
        app.announcer.wait()
        assert rec.posts == []  # the first generation: engines read the sitemaps themselves

        other = [doc(f"n{i}", loc=f"https://{OTHER}/books/{i}") for i in range(5)]
        apply(
            app,
            [doc(i) for i in range(1000, 11_001)]
            + other
            + [
                doc(1, version=2, day=2),
                doc(2, version=2, day=3),
                doc(3, version=2, day=4),
                doc(4, version=2, priority=0.5),  # not a new lastmod: not submitted
                {"op": "delete", "section": "books", "key": "5", "version": 2},  # removed: not submitted
            ],
        )
        second = publish(app)
        app.announcer.wait()
        added = {f"https://{HOST}/books/{i}" for i in [*range(1000, 11_001), 1, 2, 3]}
        assert sorted(len(p["urlList"]) for p in rec.posts) == [4, 5, 10_000]
        by_host: dict[str, list[str]] = {}
        for p in rec.posts:
            assert p["path"] == "/indexnow" and p["type"].startswith("application/json")
            assert p["key"] == KEY and p["keyLocation"] == f"https://{p['host']}/{KEY}.txt"
            assert {u.split("/")[2] for u in p["urlList"]} == {p["host"]}  # one host per POST
            by_host.setdefault(p["host"], []).extend(p["urlList"])
        assert sorted(by_host[HOST]) == sorted(added) and len(by_host[HOST]) == len(added)
        assert sorted(by_host[OTHER]) == sorted(f"https://{OTHER}/books/{i}" for i in range(5))

        info = status(app.manifest, app.store, app.router, app.settings.base_url)
        [outcome] = info["indexnow"]
        assert {
            k: outcome[k]
            for k in ("generation_id", "endpoint", "urls", "batches", "submitted", "statuses", "gave_up", "message")
        } == {
            "generation_id": second,
            "endpoint": rec.url,
            "urls": 10_009,
            "batches": 3,
            "submitted": 10_009,
            "statuses": {"200": 3},
            "gave_up": False,
            "message": "",
        }
        assert (info["last_diff"]["added"], info["last_diff"]["removed"], info["last_diff"]["changed"]) == (
            10_006,
            1,
            3,
        )

        # The key file is in every generation, so it is served under the sitemaps base URL.
        for gen in (first, second):
            assert app.store.get(gen, f"{KEY}.txt") == KEY.encode()
            verify_generation(app.store, gen, app.manifest.generations.files(gen), app.settings.limits, deep=True)
        server = make_server(app.store, app.router, app.settings.base_path, "127.0.0.1", 0)
        serve_in_thread(server)
        try:
            url = f"http://127.0.0.1:{server.server_port}{app.settings.base_path}{KEY}.txt"
            with urllib.request.urlopen(url) as resp:
                assert resp.read() == KEY.encode() and resp.headers["Content-Type"].startswith("text/plain")
        finally:
            server.shutdown()
            server.server_close()
    finally:
        app.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"key": "short12"}, "key must be 8 to 128"),
        ({"key": "k" * 129}, "key must be 8 to 128"),
        ({"key": "bad_key!x"}, "key must be 8 to 128"),
        ({"endpoints": ("api.indexnow.org",)}, "endpoint must be an http"),
        ({"key_location": "/{key}.txt"}, "key location must be an http"),
        ({"key_location": "https://{site}/"}, "key location must be an http"),
    ],
)
def test_bad_configuration_is_refused_clearly(changes: dict[str, Any], error: str) -> None:
    IndexNowConfig("k" * 128)
    with pytest.raises(ValueError, match=error):
        IndexNowConfig(**{"key": KEY, **changes})


def submit(config: IndexNowConfig, hosts: dict[str, int]) -> tuple[list[indexnow.Outcome], list[float]]:
    """Submit `n` URLs on each host; sleeps are recorded, not slept."""
    slept: list[float] = []
    sub = Submitter(config, sleep=slept.append)
    for host, n in hosts.items():
        for i in range(n):
            sub.add(f"https://{host}/p/{i}")
    return sub.finish(), slept


def test_429_and_5xx_are_retried_and_422_is_final(endpoint: Endpoint) -> None:
    rec = endpoint((429, {"Retry-After": "7"}), 503, 200, 422)
    [out], slept = submit(
        IndexNowConfig(KEY, (rec.url,), backoff=0.5), {"a.example": 3, "b.example": 2, "c.example": 1}
    )
    assert [(p["host"], len(p["urlList"])) for p in rec.posts] == [
        ("a.example", 3),
        ("a.example", 3),
        ("a.example", 3),
        ("b.example", 2),
        ("c.example", 1),
    ]
    assert rec.posts[0] == rec.posts[1] == rec.posts[2]
    assert slept == [7.0, 1.0]  # Retry-After when given, else the backoff doubling from 0.5
    assert (out.urls, out.batches, out.submitted, dict(out.statuses), out.gave_up) == (
        6,
        3,
        4,
        {429: 1, 503: 1, 200: 2, 422: 1},
        False,
    )
    assert "refused with 422" in out.message


def test_a_failing_endpoint_is_given_up_and_the_others_still_served(endpoint: Endpoint) -> None:
    throttled = endpoint(*[(429, {"Retry-After": "0"})] * 10)
    refused = endpoint(403)
    fine = endpoint()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/indexnow"
    outs, _ = submit(
        IndexNowConfig(KEY, (throttled.url, refused.url, fine.url, dead)), {"a.example": 2, "b.example": 1}
    )
    assert len(throttled.posts) == indexnow.ATTEMPTS and len(refused.posts) == 1 and len(fine.posts) == 2
    t, r, f, d = outs
    assert (t.gave_up, t.batches, t.submitted, t.urls) == (True, 1, 0, 3) and "429" in t.message
    assert (r.gave_up, dict(r.statuses)) == (True, {403: 1}) and "key was refused" in r.message
    assert (f.gave_up, f.submitted, f.batches) == (False, 3, 2)
    assert (d.gave_up, dict(d.statuses)) == (True, {0: indexnow.ATTEMPTS})


def test_a_slow_endpoint_runs_out_of_time(endpoint: Endpoint) -> None:
    slow = endpoint(delay=3.0)
    started = time.monotonic()
    [out], _ = submit(IndexNowConfig(KEY, (slow.url,), timeout=0.5), {"a.example": 1, "b.example": 1})
    assert time.monotonic() - started < 2.0
    assert out.gave_up and out.submitted == 0 and "out of time" in out.message and len(slow.posts) == 1


def test_a_retry_after_beyond_the_time_budget_is_not_waited_for(endpoint: Endpoint) -> None:
    busy = endpoint((429, {"Retry-After": "3600"}))
    [out], slept = submit(IndexNowConfig(KEY, (busy.url,), timeout=60), {"a.example": 1})
    assert slept == [] and out.gave_up and "out of time" in out.message and len(busy.posts) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_publish_is_neither_blocked_nor_failed_and_nothing_is_sent_without_a_switch(
    tmp_path: Path, database_url: str, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = endpoint(500, 500, delay=1.0)
    app = make_app(tmp_path, database_url, slow.url, timeout=1.5)
    try:
        apply(app, [doc(i) for i in range(10)])
        publish(app)
        apply(app, [doc(1, version=2, day=5)])
        started = time.monotonic()
        gen = publish(app)
        assert time.monotonic() - started < 0.9  # the endpoint takes a second to answer
        assert app.router.current() == gen
        app.announcer.wait()
        [out] = indexnow.last_outcomes(app.manifest)
        assert out["generation_id"] == gen and out["gave_up"] and out["statuses"] == {"500": 1}

        sent = len(slow.posts)
        assert app.publisher.publish().generation is None  # nothing to publish
        apply(app, [doc(2, version=2, day=6)])

        def refuse(gen_id: str, expected: str | None) -> None:
            raise RouterError("switch refused")

        monkeypatch.setattr(app.router, "switch", refuse)
        with pytest.raises(RouterError):
            app.publisher.publish()
        app.announcer.wait()
        assert len(slow.posts) == sent
    finally:
        app.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_announces_switched_publishes_only(tmp_path: Path, database_url: str, endpoint: Endpoint) -> None:
    rec = endpoint()
    env = cli_env(tmp_path, database_url, SITEMAPS_INDEXNOW_KEY=KEY, SITEMAPS_INDEXNOW_ENDPOINTS=rec.url)
    bad = run({**env, "SITEMAPS_INDEXNOW_KEY": "short"}, "publish", code=2)
    assert "IndexNow key must be 8 to 128 characters" in bad.stderr
    src = tmp_path / "catalog.jsonl"
    src.write_bytes(jsonl(*[doc(i) for i in range(30)]))
    run(env, "rebuild", "--source", str(src))
    run(env, "apply", "-", stdin=jsonl(doc(7, version=2, day=8), doc(99)))
    run(env, "publish")
    assert [sorted(p["urlList"]) for p in rec.posts] == [[f"https://{HOST}/books/{i}" for i in (7, 99)]]
    assert run(env, "publish").stdout.startswith("nothing to publish")
    run(env, "apply", "-", stdin=jsonl(doc(8, version=2, day=9)))
    killed = cli("publish", env={**env, "SITEMAPS_KILL_AT": "switch"}, check=False)  # a real kill -9
    assert killed.returncode == -9 and len(rec.posts) == 1  # never switched: nothing told
    run(env, "publish")
    assert rec.posts[1]["urlList"] == [f"https://{HOST}/books/8"]

    info = json.loads(run(env, "status", "--json").stdout)
    assert [(o["generation_id"], o["submitted"], o["statuses"]) for o in info["indexnow"]] == [
        (info["live_generation"], 1, {"200": 1})
    ]
    assert f"indexnow:         {rec.url}: 1 of 1 URLs" in run(env, "status").stdout
    run(env, "verify")  # deep: the key file is part of the generation
    live = Path(env["SITEMAPS_DATA_DIR"]) / "generations" / info["live_generation"] / f"{KEY}.txt"
    assert live.read_text() == KEY
