"""Holds: a rollback stays rolled back, `hold` keeps the site where it is, `resume` releases it; with every
router (symlink, Ingress, HTTPRoute on the Kubernetes stand-in), both databases, and across service restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sitemap_keeper.snapshot import hold
from sitemap_keeper.snapshot.manifest import Manifest
from tests.factories import doc, write_jsonl
from tests.service_helpers import ServiceProcess, service_env
from tests.services.kafka import TansuBroker
from tests.services.kube import KubeAPIServer
from tests.services.ports import wait_for
from tests.support import cli
from tests.test_kafka import kafka_env
from tests.test_routers import NS, seed_ingress, seed_route


@pytest.fixture(params=["local", "ingress", "httproute"])
def router_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The settings of a router, and a way to read what it points at without our router code."""
    if request.param == "local":
        yield {"SITEMAPS_ROUTER": "local"}
        return
    kube: KubeAPIServer = request.getfixturevalue("kube_api")
    if request.param == "ingress":
        seed_ingress(kube)
    else:
        seed_route(kube)
    yield {
        "SITEMAPS_ROUTER": request.param,
        "SITEMAPS_KUBE_API": kube.url,
        "SITEMAPS_ROUTER_NAMESPACE": NS,
        "SITEMAPS_INGRESS_NAME": "sitemaps",
        "SITEMAPS_HTTPROUTE_NAME": "sitemaps",
    }


def routed(tmp_path: Path, env: dict[str, str], kube: KubeAPIServer | None) -> str | None:
    """The generation the router object itself names: the symlink's target, or the kube object's label."""
    if env.get("SITEMAPS_ROUTER", "local") == "local":
        link = tmp_path / "data" / "current"
        return Path(os.readlink(link)).name if link.is_symlink() else None
    assert kube is not None
    obj = kube.ingress("sitemaps", NS) if env["SITEMAPS_ROUTER"] == "ingress" else kube.httproute("sitemaps", NS)
    assert obj is not None
    bucket = (obj["metadata"].get("labels") or {}).get("bucket")
    return str(bucket).removeprefix("sitemaps-") if bucket else None


def held_gauge(svc: ServiceProcess) -> dict[str, float]:
    return {k: v for k, v in svc.metrics().items() if k.startswith("sitemaps_hold_since_seconds{")}


def status(env: dict[str, str]) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(cli("status", "--json", env=env).stdout)
    return info


def test_a_rollback_holds_until_resume(
    tmp_path: Path, database_url: str, router_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    kube = request.getfixturevalue("kube_api") if router_env["SITEMAPS_ROUTER"] != "local" else None
    env = {**service_env(tmp_path, database_url), "SITEMAPS_LOG_LEVEL": "WARNING", **router_env}
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(20)]), env=env)
    first = routed(tmp_path, env, kube)
    cli("apply", write_jsonl(tmp_path / "v2.jsonl", [doc(i, None, day=2) for i in range(5)]), env=env)
    cli("publish", env=env)
    second = routed(tmp_path, env, kube)
    assert first and second and first != second

    out = cli("rollback", "--reason", "upstream sends bad dates", "--by", "alice", env=env).stdout
    assert routed(tmp_path, env, kube) == first
    assert "held" in out and "sitemaps resume" in out
    # Events are still applied while held; a publish switches nothing and says so in one line.
    counts = cli("apply", write_jsonl(tmp_path / "v3.jsonl", [doc(i, None, day=3) for i in range(3)]), env=env).stdout
    assert counts.startswith("applied 3,")
    refused = cli("publish", env=env, check=False)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "held" in refused.stderr and "alice" in refused.stderr and "sitemaps resume" in refused.stderr
    assert routed(tmp_path, env, kube) == first

    info = status(env)
    assert info["hold"]["by"] == "alice"
    assert info["hold"]["reason"] == "upstream sends bad dates"
    assert info["hold"]["generation"] == first
    assert info["dirty_shards"] > 0
    text = cli("status", env=env).stdout
    assert "hold:" in text and "alice" in text

    assert "resumed" in cli("resume", env=env).stdout
    assert status(env)["hold"] is None
    assert "published generation" in cli("publish", env=env).stdout
    third = routed(tmp_path, env, kube)
    assert third not in (first, second)
    assert status(env)["dirty_shards"] == 0


def test_hold_keeps_the_site_where_it_is(tmp_path: Path) -> None:
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    live = routed(tmp_path, env, None)
    out = cli("hold", env=env).stdout
    assert f"held at generation {live}" in out
    held = status(env)["hold"]
    assert held["by"].endswith("@" + os.uname().nodename)  # the OS user and host by default
    again = cli("hold", "--reason", "other", env=env)
    assert "already held" in again.stderr
    assert status(env)["hold"] == held  # left as it was
    # A rebuild loads the manifest but does not publish; a rollback without --hold is refused the same way.
    rebuilt = cli(
        "rebuild",
        "--source",
        write_jsonl(tmp_path / "v2.jsonl", [doc(i, None, day=2) for i in range(10)]),
        env=env,
        check=False,
    )
    assert rebuilt.returncode == 1 and "held" in rebuilt.stderr
    assert routed(tmp_path, env, None) == live
    assert "not held" not in cli("resume", env=env).stdout
    assert "not held" in cli("resume", env=env).stdout
    cli("publish", env=env)
    assert routed(tmp_path, env, None) != live


def test_rollback_without_hold_is_undone_by_the_next_publish(tmp_path: Path) -> None:
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    cli("apply", write_jsonl(tmp_path / "v2.jsonl", [doc(i, None, day=2) for i in range(3)]), env=env)
    cli("publish", env=env)
    cli("rollback", "--no-hold", env=env)
    assert status(env)["hold"] is None
    assert "published generation" in cli("publish", env=env).stdout


def test_the_service_applies_but_does_not_publish_while_held_across_restarts(tmp_path: Path, database_url: str) -> None:
    env = service_env(tmp_path, database_url)
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    live = routed(tmp_path, env, None)
    cli("hold", "--reason", "checking a feed", "--by", "bob", env=env)
    feed = tmp_path / "events.jsonl"
    write_jsonl(feed, [doc(i, None, day=4) for i in range(4)])
    log = tmp_path / "service.log"
    for turn in range(2):  # the second turn is a restart while held
        svc = ServiceProcess(["run", "--follow", str(feed)], env, log)
        try:
            wait_for(lambda: "not publishing: the site is held" in log.read_text(), 30, "the held publish")
            ((name, since),) = wait_for(lambda s=svc: held_gauge(s), 30, "the hold gauge").items()
            assert 'by="bob"' in name and f'generation="{live}"' in name
            assert since == pytest.approx(status(env)["hold"]["since"])
            held_publishes = svc.metrics()['sitemaps_publishes_total{result="held"}']
            assert held_publishes >= 1
            assert svc.metrics()['sitemaps_publishes_total{result="published"}'] == 0
        finally:
            assert svc.stop()[0] == 0
        assert routed(tmp_path, env, None) == live
        if turn == 0:
            assert status(env)["dirty_shards"] > 0  # the events were applied
    held_lines = [line for line in log.read_text().splitlines() if "held" in line]
    assert all("sitemaps resume" in line for line in held_lines)
    cli("resume", env=env)
    svc = ServiceProcess(["run", "--follow", str(feed)], env, log)
    try:
        wait_for(lambda: routed(tmp_path, env, None) != live, 30, "a publish after resume")
        wait_for(lambda: not held_gauge(svc), 30, "the gauge gone")
    finally:
        assert svc.stop()[0] == 0
    assert status(env)["dirty_shards"] == 0


def test_hold_waits_for_a_publish_in_progress(tmp_path: Path) -> None:
    """A publish that started before the hold cannot switch after it: `hold` takes the publish lock."""
    env = {**service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"), "SITEMAPS_LOG_LEVEL": "WARNING"}
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    manifest = Manifest.open(env["SITEMAPS_DATABASE_URL"])
    try:
        with manifest.locks.publish():  # a publish in progress
            proc = subprocess.Popen(
                [sys.executable, "-m", "sitemap_keeper", "hold"],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stderr is not None
            assert "a publish is in progress: waiting" in proc.stderr.readline()
            assert hold.current(manifest) is None and proc.poll() is None
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.startswith("held at generation")
        assert hold.current(manifest) is not None
    finally:
        manifest.close()


def test_a_replay_while_held_applies_the_topic_and_switches_nothing(
    kafka_broker: TansuBroker, new_topic: Any, tmp_path: Path
) -> None:
    topic = new_topic(1)
    env = {
        **kafka_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", kafka_broker, topic),
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    live = routed(tmp_path, env, None)
    cli("hold", env=env)
    events = [doc(i, None, day=5) for i in range(12)]
    kafka_broker.produce(topic, [orjson.dumps(e) for e in events], [e["key"].encode() for e in events])
    out = [line for line in cli("replay", "--exit", env=env).stdout.splitlines() if "/metrics" not in line]
    assert out[0].startswith("replayed: applied 12,")
    assert out[1].startswith("not publishing: the site is held") and len(out) == 2
    assert routed(tmp_path, env, None) == live
    assert status(env)["urls"] == 12  # the manifest is the topic's


def test_a_rollback_whose_switch_fails_leaves_the_hold_as_it_was(tmp_path: Path, kube_api: KubeAPIServer) -> None:
    kube_api.seed_ingress("sitemaps", NS, path="/sitemaps(/|$)(.*)")
    env = {
        **service_env(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"),
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_ROUTER": "ingress",
        "SITEMAPS_KUBE_API": kube_api.url,
        "SITEMAPS_ROUTER_NAMESPACE": NS,
    }
    cli("rebuild", "--source", write_jsonl(tmp_path / "v1.jsonl", [doc(i, None, day=1) for i in range(10)]), env=env)
    cli("apply", write_jsonl(tmp_path / "v2.jsonl", [doc(i, None, day=2) for i in range(3)]), env=env)
    cli("publish", env=env)
    live = routed(tmp_path, env, kube_api)
    kube_api.fail_next(403, method="PATCH", times=10)
    failed = cli("rollback", env=env, check=False)
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert routed(tmp_path, env, kube_api) == live
    assert status(env)["hold"] is None  # not held at a generation that never went live
