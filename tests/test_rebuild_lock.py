"""A rebuild while the change feed runs: events wait for the rebuild's swap instead of being dropped by it.

The swap replaces the documents table whole, so an event applied to the old one while the rebuild loads would
be lost, its offset already stored. Here the rebuild's source stalls half-way while events arrive: they must
not be applied until the swap, and then be applied to the new tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.errors import RebuildRunning
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.settings import Settings
from tests.service_helpers import HOST, ServiceProcess, event, manifest_versions, service_env
from tests.services.ports import wait_for
from tests.support import cli

DOCS = 60


def catalog(version: int) -> list[dict[str, Any]]:
    return [{k: v for k, v in event(i, version).items() if k != "op"} for i in range(DOCS)]


def stalling(rows: list[dict[str, Any]], at: int, during: Callable[[], None]) -> Iterator[dict[str, Any]]:
    """The rows, calling `during()` after the first `at` of them (the rebuild is running then)."""
    for n, row in enumerate(rows):
        if n == at:
            during()
        yield row


def rebuild(app: App, rows: Iterator[dict[str, Any]]) -> None:
    settings = app.settings
    Rebuilder(app.manifest, settings.rules, settings.limits, workers=1).rebuild(row_chunks("catalog", rows, size=10))


def open_app(tmp_path: Path, database_url: str) -> App:
    return App(Settings(data_dir=tmp_path / "data", database_url=database_url, allowed_hosts=(HOST,), max_urls=500))


def test_events_wait_for_a_running_rebuild_then_apply_to_its_tables(tmp_path: Path, database_url: str) -> None:
    env = service_env(tmp_path, database_url)
    (tmp_path / "v1.jsonl").write_bytes(b"\n".join(orjson.dumps(d) for d in catalog(1)) + b"\n")
    cli("rebuild", "--source", str(tmp_path / "v1.jsonl"), env=env)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    app = open_app(tmp_path, database_url)
    manifest = app.manifest
    changed = [event(i, 9, day=20) for i in range(0, DOCS, 7)]  # newer than the rebuild's source
    svc = ServiceProcess(["run", "--follow", str(path)], env, tmp_path / "service.log")
    try:

        def during() -> None:
            with path.open("ab") as f:
                f.write(b"".join(orjson.dumps(e) + b"\n" for e in changed))
            time.sleep(3)  # the service, polling every 0.1 s, would have applied them by now
            assert set(manifest_versions(manifest).values()) == {1}, "applied while the rebuild was loading"
            assert svc.metrics()["sitemaps_paused_for_rebuild"] == 1

        rebuild(app, stalling(catalog(2), DOCS // 2, during))
        expected = {(e["section"], e["key"]): 2 for e in catalog(2)}
        expected.update({(e["section"], e["key"]): 9 for e in changed})
        wait_for(lambda: manifest_versions(manifest) == expected, 30, "the waiting events applied")
        applied, _stale, _rejected = svc.counted()
        assert applied == len(changed)
        wait_for(lambda: svc.metrics()["sitemaps_paused_for_rebuild"] == 0, 10, "the service resumed")
    finally:
        svc.kill()
        app.close()
    assert "a rebuild is running: events wait" in svc.log_tail(200)


def test_a_rebuild_refuses_a_second_one_and_apply_waits_for_it(tmp_path: Path, database_url: str) -> None:
    env = service_env(tmp_path, database_url)
    app = open_app(tmp_path, database_url)
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(event(3, 9, day=20)) + b"\n")
    results: dict[str, Any] = {}

    def during() -> None:
        with pytest.raises(RebuildRunning, match="another rebuild is running"):
            rebuild(open_app(tmp_path, database_url), iter(catalog(5)))
        second = cli("rebuild", "--source", str(events), env=env, check=False)
        results["second"] = (second.returncode, second.stderr)
        # `sitemaps apply` waits for the rebuild (in a thread: it returns only after the swap)
        thread = threading.Thread(target=lambda: results.update(apply=cli("apply", str(events), env=env)))
        thread.start()
        results["thread"] = thread
        time.sleep(3)
        assert thread.is_alive(), "apply did not wait for the rebuild"
        assert manifest_versions(app.manifest) == {}  # nothing reached the live (empty) manifest

    try:
        rebuild(app, stalling(catalog(2), DOCS // 2, during))
        results["thread"].join(60)
        assert results["second"] == (1, "error: another rebuild is running on this manifest\n")
        assert "a rebuild is running: waiting" in results["apply"].stderr
        assert "applied 1" in results["apply"].stdout
        versions = manifest_versions(app.manifest)
        assert versions[(event(3, 9)["section"], "3")] == 9 and len(versions) == DOCS
        assert set(versions.values()) == {2, 9}
        # released: both work again at once
        assert not Manifest.open(database_url).locks.rebuild_running()
        rebuild(app, iter(catalog(3)))
    finally:
        app.close()
