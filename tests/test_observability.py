"""What ships for operators: the metrics a running service exports, JSON log lines with the event's fields,
`--json` results, the calls to S3 and Kubernetes counted by outcome, and deploy/monitoring/ (alert rules and
dashboard naming only exported metrics; promtool's own check when it is installed; kustomize renders it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sitemap_keeper.incremental.metrics import Metrics
from sitemap_keeper.snapshot import calls
from sitemap_keeper.snapshot.hold import Hold
from sitemap_keeper.snapshot.routers.base import RouterError
from tests.service_helpers import HOST, ServiceProcess, event, service_env
from tests.services.ports import wait_for
from tests.support import cli
from tests.test_s3_publish import World, moto_world  # noqa: F401 - the fixture

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
# PromQL functions, keywords and label names that look like metric names to the pattern below.
NOT_METRICS = {"by", "le", "result", "service", "outcome", "job", "pod", "and", "or", "time"}


def exported_names() -> set[str]:
    """Every sample name a service exports once it has published, knows its lag and is held."""
    m = Metrics()
    m.set_live("20240101-000000-000-0000", time.time())
    m.set_lag(0)
    m.set_hold(Hold("20240101-000000-000-0000", time.time(), "ops@host", "test"))
    m.publish_seconds.observe(1.0)
    text = generate_latest(m.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def metric_names(expr: str) -> set[str]:
    bare = re.sub(r'"[^"]*"', "", re.sub(r"\{[^}]*\}", "", expr))  # no label matchers, no strings
    words = set(re.findall(r"\b([a-z_][a-z0-9_:]*)\b(?!\s*\()", bare))
    return {w for w in words - NOT_METRICS if "_" in w and not re.fullmatch(r"\d+[smhd]", w)}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    return [r for g in doc["spec"]["groups"] for r in g["rules"]]


def test_alerts_name_only_exported_metrics() -> None:
    exported = exported_names()
    alerts = {r["alert"]: metric_names(r["expr"]) for r in rules()}
    for alert, names in alerts.items():
        assert names and names <= exported, f"{alert} names metrics not exported: {names - exported}"
    needed = {
        "sitemaps_publishes_total",
        "sitemaps_consumer_lag",
        "sitemaps_events_total",
        "sitemaps_prunes_total",
        "sitemaps_calls_total",
        "sitemaps_hold_since_seconds",
    }
    assert needed <= set().union(*alerts.values())


def test_dashboard_names_only_exported_metrics() -> None:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exported = exported_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names and names <= exported, f"{expr}: not exported: {names - exported}"


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    spec = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules())} rules found" in proc.stdout


def test_kustomize_renders_the_monitoring_component(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    deploy = os.path.relpath(MONITORING.parent, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [deploy],
                "components": [f"{deploy}/monitoring"],
            }
        )
    )
    proc = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    objs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(proc.stdout) if o}
    monitor = objs["ServiceMonitor", "sitemaps"]
    service = objs["Service", "sitemaps-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    dashboard = objs["ConfigMap", "sitemaps-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["sitemaps.json"])["uid"] == "sitemaps"
    assert ("PrometheusRule", "sitemaps") in objs


def scrape(svc: ServiceProcess) -> str:
    status, text = svc.get("/metrics")
    assert status == 200
    return text


@pytest.mark.timeout(120)
def test_a_running_service_exports_and_logs_json(tmp_path: Path, database_url: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    log = tmp_path / "service.log"
    env = service_env(tmp_path, database_url, SITEMAPS_LOG_FORMAT="json")
    svc = ServiceProcess(["run", "--follow", str(events)], env, log)
    try:
        m = svc.metrics()
        build = [k for k in m if k.startswith("sitemaps_build_info{")]
        assert len(build) == 1 and 'version="' in build[0] and 'fast_path="' in build[0]
        assert m["process_resident_memory_bytes"] > 0 and "process_cpu_seconds_total" in m
        assert m['sitemaps_calls_total{outcome="failed",service="s3"}'] == 0
        text = scrape(svc)  # absent, not 0, before the first publish; a followed file has no lag in events
        assert "sitemaps_live_generation_age_seconds" not in text and "sitemaps_consumer_lag" not in text
        events.write_bytes(b"".join(orjson.dumps(event(i, 1)) + b"\n" for i in range(30)))
        wait_for(lambda: "sitemaps_live_generation_age_seconds " in scrape(svc), 60, "a publish")
        live = next(k for k in svc.metrics() if k.startswith("sitemaps_live_generation{"))
    finally:
        code, _ = svc.stop()
    assert code == 0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records and len(records) == len(log.read_text().splitlines()), log.read_text()
    published = [r for r in records if r.get("event") == "published"]
    assert published, records
    first = published[0]
    assert {"time", "level", "logger", "message"} <= first.keys() and first["level"] == "INFO"
    assert f'generation="{first["generation"]}"' in live or len(published) > 1
    assert first["urls"] == 30 and first["rendered"] >= 1 and first["seconds"] > 0


def test_json_results(tmp_path: Path, database_url: str) -> None:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_MAX_URLS": "10",
    }
    source = tmp_path / "docs.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in event(i, 1).items() if k != "op"}) + b"\n" for i in range(25))
    )

    def run(*args: str) -> dict[str, Any]:
        out = cli(*args, "--json", env=env).stdout.splitlines()
        assert len(out) == 1, out
        result: dict[str, Any] = json.loads(out[0])
        return result

    rebuilt = run("rebuild", "--source", str(source))
    assert (rebuilt["applied"], rebuilt["rejected"], rebuilt["published"]["urls"]) == (25, 0, 25)
    first = rebuilt["published"]["generation"]
    changes = tmp_path / "changes.jsonl"
    changes.write_bytes(b"".join(orjson.dumps(event(i, 2, day=2)) + b"\n" for i in range(3)) + b"{bad\n")
    applied = run("apply", str(changes))
    assert (applied["applied"], applied["stale"], applied["rejected"]) == (3, 0, 1)
    published = run("publish")
    assert published["base"] == first and published["urls"] == 25 and published["rendered"] >= 1
    assert run("rollback") == {"from": published["generation"], "to": first, "held": True}
    pruned = run("prune", "--keep", "1", "--grace", "0")
    assert pruned["live"] == first and first in pruned["kept"]


def test_calls_are_counted_by_outcome(moto_world: World) -> None:  # noqa: F811 - the fixture
    before = calls.tally()
    moto_world.rebuild()
    after = calls.tally()
    assert after["s3", "ok"] > before["s3", "ok"] and after["kubernetes", "ok"] > before["kubernetes", "ok"]
    moto_world.kube.forbid("get", "ingresses")
    app = moto_world.app()
    try:
        with pytest.raises(RouterError):
            app.router.current()
    finally:
        app.close()
    assert calls.tally()["kubernetes", "failed"] == after["kubernetes", "failed"] + 1


def test_one_shot_results_are_json_log_records(tmp_path: Path) -> None:
    """In JSON log format a command's result is also a log record with its fields; in text format it is said
    once, on standard output."""
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "INFO",
        "SITEMAPS_LOG_FORMAT": "json",
    }
    source = tmp_path / "docs.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in event(i, 1).items() if k != "op"}) + b"\n" for i in range(12))
    )
    proc = cli("rebuild", "--source", str(source), "--json", env=env)
    (record,) = [json.loads(line) for line in proc.stderr.splitlines() if '"event": "rebuilt"' in line]
    result = json.loads(proc.stdout)
    assert record["applied"] == result["applied"] == 12 and record["published"] == result["published"]
    proc = cli("publish", "--full", env=env)
    (record,) = [json.loads(line) for line in proc.stderr.splitlines() if '"event": "published"' in line]
    assert record["message"] == proc.stdout.strip() and record["urls"] == 12 and record["level"] == "INFO"
    assert record["generation"] in proc.stdout
    text = cli("publish", "--full", env={**env, "SITEMAPS_LOG_FORMAT": "text"})
    assert "published generation" in text.stdout and "published generation" not in text.stderr
