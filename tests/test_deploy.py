"""Static checks of the container and deployment files.

Covers Dockerfile, .dockerignore, docker-compose.yml and deploy/ (Kubernetes manifests and their
kustomization). Nothing here needs a Docker engine or a cluster: the files are parsed and checked
against each other (names, keys, ports, RBAC, the rewrite regex against its annotation), the
Kubernetes objects are round-tripped through the official client's models to catch misspelt or
misplaced fields, and `kubectl kustomize` renders deploy/ when kubectl is installed. (`kubectl
create/apply --dry-run=client` is not used: both need an API server for discovery.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# In deploy/ but deliberately not in kustomization.yaml.
EXAMPLE_FILES = {"secret.example.yaml"}
OPTIONAL_VARIANT_FILES = {"httproute.yaml", "role-httproute.yaml"}  # Gateway API, instead of ingress.yaml
REQUIRED_FILES = {
    "kustomization.yaml",
    "deployment.yaml",
    "serviceaccount.yaml",
    "role.yaml",
    "rolebinding.yaml",
    "role-httproute.yaml",
    "configmap.yaml",
    "ingress.yaml",
    "httproute.yaml",
    "cronjob.yaml",
    "secret.example.yaml",
}

# The service's documented settings (every CLI option is also a SITEMAPS_* variable).
DOCUMENTED_ENV = frozenset(
    {
        "SITEMAPS_DATABASE_URL",
        "SITEMAPS_BASE_URL",
        "SITEMAPS_ALLOWED_HOSTS",
        "SITEMAPS_STORAGE",
        "SITEMAPS_S3_ENDPOINT",
        "SITEMAPS_S3_ACCESS_KEY",
        "SITEMAPS_S3_SECRET_KEY",
        "SITEMAPS_S3_SECURE",
        "SITEMAPS_S3_REGION",
        "SITEMAPS_BUCKET_PREFIX",
        "SITEMAPS_ROUTER",
        "SITEMAPS_ROUTER_NAMESPACE",
        "SITEMAPS_INGRESS_NAME",
        "SITEMAPS_ROUTER_LABEL",
        "SITEMAPS_INGRESS_ANNOTATION",
        "SITEMAPS_INGRESS_ANNOTATION_VALUE",
        "SITEMAPS_HTTPROUTE_NAME",
        "SITEMAPS_KAFKA_BOOTSTRAP_SERVERS",
        "SITEMAPS_KAFKA_TOPIC",
        "SITEMAPS_KAFKA_GROUP",
        "SITEMAPS_KAFKA_SECURITY_PROTOCOL",
        "SITEMAPS_KAFKA_SASL_MECHANISM",
        "SITEMAPS_KAFKA_SASL_USERNAME",
        "SITEMAPS_KAFKA_SASL_PASSWORD",
        "SITEMAPS_PUBLISH_INTERVAL",
        "SITEMAPS_PRUNE_INTERVAL",
        "SITEMAPS_KEEP",
        "SITEMAPS_MAX_SHRINK",
        "SITEMAPS_HTTP_PORT",
        "SITEMAPS_LEADER_ELECTION",
        "SITEMAPS_LEASE_NAME",
        "SITEMAPS_LEASE_NAMESPACE",
    }
)

# Not in the list above, but an option of the CLI (incremental/cli/options.py): compose puts the
# local router's data directory on a volume.
CLI_ALSO_ACCEPTS = frozenset({"SITEMAPS_DATA_DIR"})

# The Role must grant exactly this, in this order (compared as a whole list).
EXPECTED_ROLE_RULES = [
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses"],
        "resourceNames": ["sitemaps"],
        "verbs": ["get", "patch"],
    },
    # create cannot be limited by resourceNames in Kubernetes.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["sitemaps-publisher"],
        "verbs": ["get", "update"],
    },
]
EXPECTED_HTTPROUTE_ROLE_RULES = [
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "resourceNames": ["sitemaps"],
        "verbs": ["get", "patch"],
    },
]

# kind -> model of the official Kubernetes client, for the round-trip check.
K8S_MODELS = {
    "ConfigMap": "V1ConfigMap",
    "CronJob": "V1CronJob",
    "Deployment": "V1Deployment",
    "Ingress": "V1Ingress",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
    "Secret": "V1Secret",
    "Service": "V1Service",
    "ServiceAccount": "V1ServiceAccount",
}

PLACEHOLDER = "change-me"


# --------------------------------------------------------------------------- helpers


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def deploy_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir() if p.suffix in {".yaml", ".yml"})


def objects_in(name: str) -> list[dict[str, Any]]:
    return load_yaml_docs(DEPLOY / name)


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, obj) for p in deploy_yaml_files() for obj in load_yaml_docs(p)]


def find(kind: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    hits = [
        obj
        for fname, obj in all_objects()
        if obj.get("kind") == kind
        and (name is None or obj["metadata"]["name"] == name)
        and (file is None or fname == file)
    ]
    assert len(hits) == 1, f"expected exactly one {kind} {name or ''} in {file or 'deploy/'}, got {len(hits)}"
    return hits[0]


def configmap_data() -> dict[str, str]:
    data = find("ConfigMap", "sitemaps")["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return data


def secret_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for obj in objects_in("secret.example.yaml"):
        assert obj["kind"] == "Secret"
        keys[obj["metadata"]["name"]] = set(obj.get("stringData", {})) | set(obj.get("data", {}))
    return keys


def pod_spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def only_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    assert len(pod_spec["containers"]) == 1
    return pod_spec["containers"][0]


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def interpolate(value: str) -> str:
    """docker compose interpolation with an empty environment: ${X:-default} -> default."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return m.group("default") or ""

    pattern = r"\$\$|\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
    return re.sub(pattern, repl, value)


def compose() -> dict[str, Any]:
    docs = load_yaml_docs(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


def compose_env(service: dict[str, Any], *, raw: bool = False) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) if raw else interpolate(str(v)) for k, v in env.items()}


def app_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the sitemaps image (built here, or that image by name)."""
    app_image = spec["services"]["sitemaps"].get("image")
    return {
        name: svc
        for name, svc in spec["services"].items()
        if "build" in svc or (app_image is not None and svc.get("image") == app_image)
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw_line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        instr, _, rest = full.partition(" ")
        out.append((instr.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def final_stage() -> list[tuple[str, str]]:
    instrs = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instrs) if ins == "FROM")
    return instrs[last_from:]


def healthcheck_command() -> list[str]:
    checks = [rest for ins, rest in final_stage() if ins == "HEALTHCHECK"]
    assert len(checks) == 1
    options, sep, cmd = checks[0].partition("CMD ")
    assert sep, "HEALTHCHECK must use CMD"
    assert all(opt.startswith("--") for opt in options.split())
    return json.loads(cmd)


# --------------------------------------------------------------------------- deploy/: structure


def test_deploy_directory_has_the_expected_files() -> None:
    present = {p.name for p in deploy_yaml_files()}
    assert present >= REQUIRED_FILES, f"missing: {sorted(REQUIRED_FILES - present)}"
    assert (DEPLOY / "README.md").is_file()


@pytest.mark.parametrize("path", deploy_yaml_files(), ids=lambda p: p.name)
def test_every_object_is_identified_and_namespace_agnostic(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path.name} is empty"
    for obj in docs:
        assert isinstance(obj, dict)
        assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"]
        assert isinstance(obj.get("kind"), str) and obj["kind"]
        name = obj.get("metadata", {}).get("name")
        assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        # The namespace is chosen at apply time (-n / kustomize `namespace:`).
        assert "namespace" not in obj["metadata"], f"{path.name}: {obj['kind']} {name} pins a namespace"


def test_object_names_are_unique_per_kind() -> None:
    seen = [(obj["kind"], obj["metadata"]["name"]) for _, obj in all_objects()]
    assert len(seen) == len(set(seen)), seen


def test_kustomization_lists_every_manifest_except_examples() -> None:
    kust = objects_in("kustomization.yaml")
    assert len(kust) == 1
    kust = kust[0]
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    assert "namespace" not in kust
    resources = kust["resources"]
    assert len(resources) == len(set(resources)), "duplicate resources"
    expected = {p.name for p in deploy_yaml_files()} - {"kustomization.yaml"} - EXAMPLE_FILES
    expected -= OPTIONAL_VARIANT_FILES
    assert set(resources) == expected
    assert not EXAMPLE_FILES & set(resources), "examples must never be applied"


def test_kustomization_image_matches_workloads() -> None:
    kust = objects_in("kustomization.yaml")[0]
    images = {i["name"] for i in kust["images"]}
    for kind, name in [("Deployment", "sitemaps"), ("CronJob", "sitemaps-rebuild")]:
        container = only_container(pod_spec_of(find(kind, name)))
        assert container["image"] in images


def test_kustomize_build_renders_the_listed_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    listed = objects_in("kustomization.yaml")[0]["resources"]
    expected = {(o["kind"], o["metadata"]["name"]) for f in listed for o in objects_in(f)}
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered} == expected
    tag = objects_in("kustomization.yaml")[0]["images"][0]["newTag"]
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    assert only_container(deployment["spec"]["template"]["spec"])["image"] == f"sitemaps:{tag}"


def _model_cases() -> list[Any]:
    return [
        pytest.param(fname, obj, id=f"{fname}:{obj['kind']}/{obj['metadata']['name']}")
        for fname, obj in all_objects()
        if obj.get("kind") in K8S_MODELS
    ]


@pytest.mark.parametrize(("fname", "obj"), _model_cases())
def test_objects_round_trip_through_kubernetes_models(fname: str, obj: dict[str, Any]) -> None:
    """Unknown or misplaced fields are dropped by the models, wrong types get coerced: either shows."""
    k8s = pytest.importorskip("kubernetes")
    api = k8s.client.ApiClient()

    class _Response:
        data = json.dumps(obj)

    model = api.deserialize(_Response(), K8S_MODELS[obj["kind"]])
    assert api.sanitize_for_serialization(model) == obj


# --------------------------------------------------------------------------- RBAC


def test_role_rules_are_exactly_the_expected_set() -> None:
    role = find("Role", "sitemaps", file="role.yaml")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["rules"] == EXPECTED_ROLE_RULES


def test_httproute_role_rules_are_exactly_the_expected_set() -> None:
    role = find("Role", file="role-httproute.yaml")
    assert role["rules"] == EXPECTED_HTTPROUTE_ROLE_RULES


def test_no_rule_grants_more_than_allowed() -> None:
    for _, obj in all_objects():
        if obj["kind"] in {"Role", "ClusterRole"}:
            assert obj["kind"] == "Role", "nothing cluster-wide"
            for rule in obj["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert not {"list", "watch", "delete", "deletecollection"} & set(rule["verbs"])
                assert "secrets" not in rule["resources"]
                # Everything but create is pinned to names.
                if set(rule["verbs"]) != {"create"}:
                    assert rule.get("resourceNames"), rule


@pytest.mark.parametrize("fname", ["rolebinding.yaml", "role-httproute.yaml"])
def test_rolebindings_bind_the_service_account_to_an_existing_role(fname: str) -> None:
    binding = find("RoleBinding", file=fname)
    ref = binding["roleRef"]
    assert ref["apiGroup"] == "rbac.authorization.k8s.io" and ref["kind"] == "Role"
    find("Role", ref["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sitemaps"}]
    find("ServiceAccount", "sitemaps")


def test_rbac_resource_names_match_the_configured_names() -> None:
    cfg = configmap_data()
    ingress_rule, _, lease_rule = find("Role", "sitemaps")["rules"]
    assert ingress_rule["resourceNames"] == [cfg["SITEMAPS_INGRESS_NAME"]]
    assert lease_rule["resourceNames"] == [cfg["SITEMAPS_LEASE_NAME"]]
    find("Ingress", cfg["SITEMAPS_INGRESS_NAME"])
    (route_rule,) = find("Role", file="role-httproute.yaml")["rules"]
    assert route_rule["resourceNames"] == [cfg["SITEMAPS_HTTPROUTE_NAME"]]
    find("HTTPRoute", cfg["SITEMAPS_HTTPROUTE_NAME"])


# --------------------------------------------------------------------------- ConfigMap / Secrets


def test_configmap_names_only_documented_settings_and_no_secrets() -> None:
    cfg = configmap_data()
    assert set(cfg) <= DOCUMENTED_ENV, sorted(set(cfg) - DOCUMENTED_ENV)
    secret_like = {k for k in cfg if re.search(r"PASSWORD|SECRET|ACCESS_KEY|USERNAME|DATABASE_URL", k)}
    assert not secret_like, f"secrets belong in a Secret: {sorted(secret_like)}"
    # Namespaces come from the downward API, so the manifests stay namespace-agnostic.
    assert "SITEMAPS_ROUTER_NAMESPACE" not in cfg and "SITEMAPS_LEASE_NAMESPACE" not in cfg


def test_configmap_values_are_consistent() -> None:
    cfg = configmap_data()
    assert cfg["SITEMAPS_STORAGE"] == "s3"
    assert cfg["SITEMAPS_ROUTER"] == "ingress"
    assert cfg["SITEMAPS_S3_SECURE"] in {"true", "false"}
    assert cfg["SITEMAPS_LEADER_ELECTION"] in {"postgres", "lease", "none"}
    for key in ("SITEMAPS_PUBLISH_INTERVAL", "SITEMAPS_PRUNE_INTERVAL", "SITEMAPS_KEEP"):
        assert cfg[key].isdigit() and int(cfg[key]) > 0, key
    assert cfg["SITEMAPS_HTTP_PORT"].isdigit() and 0 < int(cfg["SITEMAPS_HTTP_PORT"]) < 65536
    base = urlsplit(cfg["SITEMAPS_BASE_URL"])
    assert base.scheme == "https" and base.path.endswith("/")
    assert base.hostname in cfg["SITEMAPS_ALLOWED_HOSTS"].split(",")
    assert "{bucket}" in cfg["SITEMAPS_INGRESS_ANNOTATION_VALUE"]


def test_secret_example_is_only_an_example() -> None:
    for obj in objects_in("secret.example.yaml"):
        assert obj["kind"] == "Secret" and obj["type"] == "Opaque"
        assert "data" not in obj, "placeholders go in stringData"
        for key, value in obj["stringData"].items():
            assert PLACEHOLDER in value, f"{obj['metadata']['name']}/{key} is not a placeholder"
    assert "EXAMPLE" in (DEPLOY / "secret.example.yaml").read_text(encoding="utf-8")
    assert {"sitemaps-s3", "sitemaps-db"} <= set(secret_keys())
    assert {"access-key", "secret-key"} <= secret_keys()["sitemaps-s3"]


# --------------------------------------------------------------------------- workloads


WORKLOADS = [("Deployment", "sitemaps"), ("CronJob", "sitemaps-rebuild")]


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_workload_references_resolve(kind: str, name: str) -> None:
    obj = find(kind, name)
    pod = pod_spec_of(obj)
    find("ServiceAccount", pod["serviceAccountName"])
    assert pod["serviceAccountName"] == "sitemaps"
    container = only_container(pod)
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == ["sitemaps"]
    find("ConfigMap", "sitemaps")
    keys = secret_keys()
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs
    for ref in refs:
        assert ref["name"] in keys, ref
        assert ref["key"] in keys[ref["name"]], ref
    env = env_by_name(container)
    s3 = {"name": "sitemaps-s3"}
    assert env["SITEMAPS_S3_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {**s3, "key": "access-key"}
    assert env["SITEMAPS_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {**s3, "key": "secret-key"}
    assert env["SITEMAPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "sitemaps-db"
    for var in ["SITEMAPS_ROUTER_NAMESPACE", "SITEMAPS_LEASE_NAMESPACE"]:
        assert env[var]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_workload_env_names_are_documented_and_not_duplicated(kind: str, name: str) -> None:
    container = only_container(pod_spec_of(find(kind, name)))
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))
    prefixed = {n for n in names if n.startswith("SITEMAPS_")}
    assert prefixed <= DOCUMENTED_ENV, sorted(prefixed - DOCUMENTED_ENV)
    # Explicit env wins over envFrom; the ConfigMap must not carry the same names.
    assert not prefixed & set(configmap_data())


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_workload_is_hardened(kind: str, name: str) -> None:
    pod = pod_spec_of(find(kind, name))
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert psc["runAsUser"] == image_uid() and psc["runAsUser"] != 0
    container = only_container(pod)
    csc = container["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc.get("privileged", False) is False
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root needs a writable /tmp.
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volume = next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])
    assert "emptyDir" in volume
    assert pod["terminationGracePeriodSeconds"] == 60
    assert container["command"] == ["sitemaps"]


def test_workloads_share_the_same_security_context() -> None:
    pods = [pod_spec_of(find(kind, name)) for kind, name in WORKLOADS]
    assert pods[0]["securityContext"] == pods[1]["securityContext"]
    assert only_container(pods[0])["securityContext"] == only_container(pods[1])["securityContext"]


def test_deployment_runs_the_service_with_probes_and_resources() -> None:
    dep = find("Deployment", "sitemaps")
    assert dep["apiVersion"] == "apps/v1"
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    cfg = configmap_data()
    if dep["spec"]["replicas"] > 1:
        assert cfg["SITEMAPS_LEADER_ELECTION"] != "none", "several replicas need leader election"
    container = only_container(dep["spec"]["template"]["spec"])
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(cfg["SITEMAPS_HTTP_PORT"])}
    expected_paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected_paths.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == int(cfg["SITEMAPS_HTTP_PORT"]), probe
    resources = container["resources"]
    assert resources["requests"]["cpu"] == "250m" and "cpu" not in resources["limits"]
    # The request covers the pod's processes' measured peak together (bench/bench_service_memory.py, the figure
    # in docs/performance.md), and the limit leaves room for render workers of shards near the 50 MiB limit.
    mib = {
        k: int(resources[k]["memory"].removesuffix("Mi"))
        if resources[k]["memory"].endswith("Mi")
        else int(resources[k]["memory"].removesuffix("Gi")) * 1024
        for k in ("requests", "limits")
    }
    assert mib["requests"] >= 489 and mib["limits"] >= 1024, resources


def test_metrics_service_selects_the_pods_and_is_annotated_for_prometheus() -> None:
    dep = find("Deployment", "sitemaps")
    svc = find("Service", "sitemaps-metrics", file="deployment.yaml")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    # ...and not the rebuild job's pods.
    job_pod = find("CronJob", "sitemaps-rebuild")["spec"]["jobTemplate"]["spec"]["template"]
    job_labels = job_pod["metadata"]["labels"]
    assert not svc["spec"]["selector"].items() <= job_labels.items()
    container = only_container(dep["spec"]["template"]["spec"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = svc["spec"]["ports"]
    target = named[port["targetPort"]] if isinstance(port["targetPort"], str) else port["targetPort"]
    ann = svc["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == target == port["port"]


def test_cronjob_is_a_weekly_forbid_concurrency_rebuild() -> None:
    cron = find("CronJob", "sitemaps-rebuild")
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert is_weekly(spec["schedule"]), spec["schedule"]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = pod_spec_of(cron)
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    container = only_container(pod)
    args = container["args"]
    assert args[0] == "rebuild"
    assert "--source-sql" in args
    assert args[args.index("--source-sql") + 1].strip().upper().startswith("SELECT")
    query = args[args.index("--source-sql") + 1]
    # The columns name the document fields; these three are required by `rebuild`.
    for column in ("section", "key", "loc"):
        assert re.search(rf"\b{column}\b", query), column
    assert "--source-database-url" in args
    # $(VAR) is only expanded for variables defined in the container's env; otherwise it stays literal.
    env = env_by_name(container)
    for arg in args:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"$({var}) in args is not defined in env"
    assert env["SOURCE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "sitemaps-db"


def is_weekly(schedule: str) -> bool:
    if schedule.strip() == "@weekly":
        return True
    fields = schedule.split()
    if len(fields) != 5:
        return False
    minute, hour, dom, month, dow = fields
    days = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
    return (
        minute.isdigit()
        and int(minute) < 60
        and hour.isdigit()
        and int(hour) < 24
        and dom == "*"
        and month == "*"
        and ((dow.isdigit() and int(dow) <= 7) or dow.lower() in days)
    )


@pytest.mark.parametrize(
    ("schedule", "weekly"),
    [
        ("0 3 * * 0", True),
        ("@weekly", True),
        ("0 3 * * *", False),
        ("0 3 1 * 0", False),
        ("*/5 3 * * 0", False),
    ],
)
def test_weekly_schedule_recognizer(schedule: str, weekly: bool) -> None:
    assert is_weekly(schedule) is weekly


# --------------------------------------------------------------------------- router: Ingress / HTTPRoute


def nginx_rewrite(path_regex: str, target: str, request_path: str) -> str | None:
    """What ingress-nginx does with use-regex + rewrite-target: case-insensitive, anchored at the start."""
    m = re.match(path_regex, request_path, re.IGNORECASE)
    if m is None:
        return None
    return re.sub(r"\$(\d)", lambda g: m.group(int(g.group(1))) or "", target)


def test_ingress_regex_capture_groups_match_the_rewrite_target() -> None:
    cfg = configmap_data()
    ing = find("Ingress", cfg["SITEMAPS_INGRESS_NAME"], file="ingress.yaml")
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/use-regex"] == "true"
    target = ann[cfg["SITEMAPS_INGRESS_ANNOTATION"]]
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["pathType"] == "ImplementationSpecific"
    regex = path["path"]
    assert regex == "/sitemaps(/|$)(.*)"
    groups = re.compile(regex).groups
    referenced = [int(n) for n in re.findall(r"\$(\d)", target)]
    assert referenced == [2]
    assert max(referenced) <= groups
    bucket = ing["metadata"]["labels"][cfg["SITEMAPS_ROUTER_LABEL"]]
    assert nginx_rewrite(regex, target, "/sitemaps/sitemap.xml") == f"/{bucket}/sitemap.xml"
    nested = "a/sitemap-00017.xml.gz"
    assert nginx_rewrite(regex, target, f"/sitemaps/{nested}") == f"/{bucket}/{nested}"
    assert nginx_rewrite(regex, target, "/sitemaps") == f"/{bucket}/"
    assert nginx_rewrite(regex, target, "/sitemapsfoo") is None
    # The public base URL's path is what the regex serves.
    base_path = urlsplit(cfg["SITEMAPS_BASE_URL"]).path
    assert nginx_rewrite(regex, target, base_path + "x.xml") == f"/{bucket}/x.xml"


def test_ingress_label_and_annotation_name_the_same_bucket() -> None:
    cfg = configmap_data()
    ing = find("Ingress", cfg["SITEMAPS_INGRESS_NAME"])
    bucket = ing["metadata"]["labels"][cfg["SITEMAPS_ROUTER_LABEL"]]
    assert_bucket_name(bucket, cfg["SITEMAPS_BUCKET_PREFIX"])
    annotation = ing["metadata"]["annotations"][cfg["SITEMAPS_INGRESS_ANNOTATION"]]
    # Exactly what the service writes for this bucket.
    assert annotation == cfg["SITEMAPS_INGRESS_ANNOTATION_VALUE"].format(bucket=bucket)
    assert annotation.split("/")[1] == bucket


def test_ingress_routes_to_minio_by_its_own_host_name() -> None:
    cfg = configmap_data()
    ing = find("Ingress", cfg["SITEMAPS_INGRESS_NAME"])
    s3_host, _, s3_port = cfg["SITEMAPS_S3_ENDPOINT"].partition(":")
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-vhost"] == s3_host
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == urlsplit(cfg["SITEMAPS_BASE_URL"]).hostname
    backend = rule["http"]["paths"][0]["backend"]["service"]
    svc = find("Service", backend["name"], file="ingress.yaml")
    assert svc["spec"]["type"] == "ExternalName"
    assert svc["spec"]["externalName"] == s3_host
    assert backend["port"]["number"] == int(s3_port) == svc["spec"]["ports"][0]["port"]


def test_httproute_rewrite_filter_is_well_formed() -> None:
    cfg = configmap_data()
    route = find("HTTPRoute", cfg["SITEMAPS_HTTPROUTE_NAME"], file="httproute.yaml")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"]
    assert urlsplit(cfg["SITEMAPS_BASE_URL"]).hostname in route["spec"]["hostnames"]
    (rule,) = route["spec"]["rules"]
    (match,) = rule["matches"]
    assert match["path"] == {"type": "PathPrefix", "value": "/sitemaps"}
    assert urlsplit(cfg["SITEMAPS_BASE_URL"]).path.rstrip("/") == match["path"]["value"]
    (flt,) = rule["filters"]
    assert set(flt) == {"type", "urlRewrite"} and flt["type"] == "URLRewrite"
    rewrite_path = flt["urlRewrite"]["path"]
    # ReplacePrefixMatch carries replacePrefixMatch (and needs a PathPrefix match), nothing else.
    assert set(rewrite_path) == {"type", "replacePrefixMatch"}
    assert rewrite_path["type"] == "ReplacePrefixMatch"
    bucket = route["metadata"]["labels"][cfg["SITEMAPS_ROUTER_LABEL"]]
    assert_bucket_name(bucket, cfg["SITEMAPS_BUCKET_PREFIX"])
    assert rewrite_path["replacePrefixMatch"] == f"/{bucket}"
    s3_host, _, s3_port = cfg["SITEMAPS_S3_ENDPOINT"].partition(":")
    assert flt["urlRewrite"].get("hostname", s3_host) == s3_host
    (backend,) = rule["backendRefs"]
    assert backend["port"] == int(s3_port)


def assert_bucket_name(bucket: str, prefix: str) -> None:
    from sitemap_keeper.snapshot.generation import is_id

    assert bucket.startswith(prefix + "-"), bucket
    # The placeholder must parse like any generation the service would read back from the router.
    assert is_id(bucket.removeprefix(prefix + "-")), bucket
    # Valid both as an S3 bucket name and as a label value.
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket), bucket


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_has_the_services() -> None:
    services = compose()["services"]
    assert {"minio", "kafka", "kafka-init", "postgres", "sitemaps"} <= set(services)
    assert services["minio"]["image"].startswith("minio/minio")
    assert "server" in services["minio"]["command"] and "--console-address" in services["minio"]["command"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"] == "postgres:15"
    app = services["sitemaps"]
    assert app["build"]["context"] == "." and app["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert app["command"] == ["run"]


def test_compose_app_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    depends = services["sitemaps"]["depends_on"]
    for dep in ["postgres", "minio", "kafka"]:
        assert depends[dep] == {"condition": "service_healthy"}, dep
        assert services[dep]["healthcheck"]["test"], dep
    assert depends["kafka-init"] == {"condition": "service_completed_successfully"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_compose_topic_is_created_compacted_before_use() -> None:
    services = compose()["services"]
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"] == {"condition": "service_healthy"}
    cmd = [str(c) for c in init["command"]]
    assert "kafka-topics.sh" in init["entrypoint"][0]
    assert "--create" in cmd and "--if-not-exists" in cmd
    topic = compose_env(services["sitemaps"]).get("SITEMAPS_KAFKA_TOPIC", "documents")
    assert cmd[cmd.index("--topic") + 1] == topic == "documents"
    assert cmd[cmd.index("--config") + 1] == "cleanup.policy=compact"
    assert "compact" in COMPOSE_FILE.read_text(encoding="utf-8").split("kafka-init:")[1].split("postgres:")[0]
    assert compose_env(services["kafka"])["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_app_env_is_documented_and_wired_to_the_services() -> None:
    spec = compose()
    services = spec["services"]
    accepted = DOCUMENTED_ENV | CLI_ALSO_ACCEPTS
    for name, svc in app_services(spec).items():
        env = compose_env(svc)
        assert set(env) <= accepted, (name, sorted(set(env) - accepted))
    env = compose_env(services["sitemaps"])
    assert env["SITEMAPS_STORAGE"] == "s3"
    assert env["SITEMAPS_ROUTER"] == "local"

    db = urlsplit(env["SITEMAPS_DATABASE_URL"])
    pg = compose_env(services["postgres"])
    assert db.scheme == "postgresql+psycopg"
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert (db.hostname, db.port) == ("postgres", 5432)

    minio = compose_env(services["minio"])
    assert env["SITEMAPS_S3_ENDPOINT"] == "minio:9000"
    assert env["SITEMAPS_S3_SECURE"] == "false"
    assert env["SITEMAPS_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
    assert env["SITEMAPS_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]

    kafka = compose_env(services["kafka"])
    advertised = [item.split("://", 1)[1] for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    assert env["SITEMAPS_KAFKA_BOOTSTRAP_SERVERS"] in advertised
    assert env["SITEMAPS_KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]


def test_compose_secrets_are_placeholders() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name, svc in compose()["services"].items():
        for key, raw in compose_env(svc, raw=True).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert PLACEHOLDER in interpolate(raw), (name, key)
        db_url = compose_env(svc).get("SITEMAPS_DATABASE_URL")
        if db_url:
            assert PLACEHOLDER in (urlsplit(db_url).password or ""), name
    assert "change me" in text.lower()


def test_compose_local_router_state_is_shared_and_serve_is_reachable() -> None:
    services = compose()["services"]
    data_dir = compose_env(services["sitemaps"])["SITEMAPS_DATA_DIR"]
    mounts = {m.split(":", 1)[1] for m in services["sitemaps"]["volumes"]}
    assert data_dir in mounts, "the local router's symlink must survive restarts"
    serve = services.get("serve")
    if serve is not None:
        assert serve["profiles"], "optional: not started by a plain `up`"
        assert compose_env(serve)["SITEMAPS_DATA_DIR"] == data_dir
        assert set(serve["volumes"]) & set(services["sitemaps"]["volumes"]), "serve must see the same pointer"
        cmd = serve["command"]
        assert cmd[0] == "serve"
        # serve binds 127.0.0.1 by default, which a published port cannot reach.
        assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
        port = cmd[cmd.index("--port") + 1]
        assert any(str(p).endswith(f":{port}") for p in serve["ports"])


def test_compose_uses_declared_named_volumes() -> None:
    spec = compose()
    declared = set(spec["volumes"])
    used = set()
    for svc in spec["services"].values():
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/", "~")):
                used.add(source)
    assert used == declared
    for name in ["minio", "kafka", "postgres"]:
        assert spec["services"][name].get("volumes"), f"{name} keeps no data"


# --------------------------------------------------------------------------- Dockerfile / .dockerignore


def image_uid() -> int:
    users = [rest for ins, rest in final_stage() if ins == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric USER, so runAsNonRoot can verify it"
    return int(uid)


def test_dockerfile_base_install_and_entrypoint() -> None:
    instrs = dockerfile_instructions()
    froms = [rest.split()[0] for ins, rest in instrs if ins == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    runs = [rest for ins, rest in instrs if ins == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs
    install = " ".join(installs)
    assert re.search(r"pip install --upgrade pip\b", install)
    assert re.search(r"pip install \.(\s|$)", install)
    assert install.index("--upgrade pip") < re.search(r"pip install \.(\s|$)", install).start()
    # The C extension is optional for pip; the image must have it: a compiler in the build stage, and an
    # import from outside the source tree (where only the installed package is importable) after the install.
    build = " ".join(rest for ins, rest in instrs[: len(instrs) - len(final_stage())] if ins == "RUN")
    assert re.search(r"apt-get install [^&]*\bgcc\b", build), build
    fastrow = r"import sitemap_keeper\.snapshot\._fastrow"
    assert re.search(rf"pip install \.\s.*&& cd / && python -c \"{fastrow}\"", install), install
    final = final_stage()
    assert image_uid() != 0
    entry = [json.loads(rest) for ins, rest in final if ins == "ENTRYPOINT"]
    cmd = [json.loads(rest) for ins, rest in final if ins == "CMD"]
    assert entry == [["sitemaps"]]
    assert cmd == [["run"]]
    assert [rest for ins, rest in final if ins == "EXPOSE"] == ["8080"]


def test_dockerfile_healthcheck_uses_python_not_curl() -> None:
    cmd = healthcheck_command()
    assert cmd[:2] == ["python", "-c"]
    assert "/healthz" in cmd[2] and "curl" not in cmd[2]
    compile(cmd[2], "<healthcheck>", "exec")


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[HTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_follows_healthz(
    health_server: tuple[HTTPServer, type[_Handler]], status: int, healthy: bool
) -> None:
    server, handler = health_server
    handler.status = status
    code = healthcheck_command()[2]
    env = {"SITEMAPS_HTTP_PORT": str(server.server_address[1]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False)
    assert (proc.returncode == 0) is healthy, proc.stderr


def test_dockerignore_lets_in_what_pip_install_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    raw_lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    lines = [ln.strip() for ln in raw_lines if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list style"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert "pyproject.toml" in allowed
    assert "setup.py" in allowed, "it declares the C extension"
    assert "**/*.so" in lines, "a developer's built extension never reaches the image"
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        assert readme in allowed
    assert "LICENSE" in allowed, "pyproject's license-files"
    for folder in pyproject["tool"]["setuptools"]["package-dir"].values():
        assert folder in allowed, folder
    assert pyproject["project"]["scripts"]["sitemaps"], "the image's ENTRYPOINT is this console script"


# --------------------------------------------------------------------------- docs


def test_readme_documents_both_annotation_forms() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "ingress.kubernetes.io/rewrite-target: /" in text
    assert "nginx.ingress.kubernetes.io/rewrite-target" in text
    assert "SITEMAPS_INGRESS_ANNOTATION_VALUE=/{bucket}/$2" in text
    assert "SITEMAPS_INGRESS_ANNOTATION_VALUE=/{bucket}\n" in text
    for name in REQUIRED_FILES:
        assert f"`{name}`" in text, name
