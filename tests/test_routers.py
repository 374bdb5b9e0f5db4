"""The Ingress and HTTPRoute routers against the Kubernetes API stand-in, read back with kubectl: what only
they do (the router contract itself is tests/contract/test_router_contract.py)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.routers import open_router
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.routers.httproute import HTTPRouteRouter
from sitemap_keeper.snapshot.routers.ingress import IngressRouter
from sitemap_keeper.snapshot.routers.kube import api_client
from sitemap_keeper.snapshot.settings import Settings
from tests.services.kube import KubeAPIServer

NS = "web"
G1, G2, G3 = "20240101-000000-000-0001", "20240102-000000-000-0002", "20240103-000000-000-0003"
FAST = Backoff(attempts=5, base=0.001, cap=0.01)
INGRESS = ("networking.k8s.io/v1", "Ingress", NS, "sitemaps")
NGINX = "nginx.ingress.kubernetes.io/rewrite-target"
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def ingress_router(kube_api: KubeAPIServer, layout: Layout | None = None, **kw: Any) -> IngressRouter:
    return IngressRouter(kube_api.api_client(), NS, "sitemaps", layout or Layout("sitemaps"), backoff=FAST, **kw)


def route_router(kube_api: KubeAPIServer, layout: Layout | None = None) -> HTTPRouteRouter:
    return HTTPRouteRouter(kube_api.api_client(), NS, "sitemaps", layout or Layout("sitemaps"), backoff=FAST)


def seed_ingress(kube_api: KubeAPIServer, bucket: str | None = None) -> None:
    kube_api.seed_ingress(
        "sitemaps",
        NS,
        path="/sitemaps(/|$)(.*)",
        labels={"bucket": bucket} if bucket else None,
        annotations={"nginx.ingress.kubernetes.io/use-regex": "true"},
    )


def seed_route(kube_api: KubeAPIServer, bucket: str | None = None) -> None:
    kube_api.seed_httproute("sitemaps", NS, labels={"bucket": bucket} if bucket else None)
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"hostname": "minio", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}},
    }
    kube_api.modify(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        NS,
        "sitemaps",
        lambda o: o["spec"]["rules"][0].update(filters=[rewrite]),
    )


def kubectl_json(kube_api: KubeAPIServer, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kube_api.kubectl("get", kind, "sitemaps", "-n", NS, "-o", "json").stdout)
    return out


@needs_kubectl
def test_ingress_switch_patches_label_and_annotation_together(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api)
    router = ingress_router(kube_api)
    router.switch(G1, expected=None)
    router.switch(G2, expected=G1)
    ing = kubectl_json(kube_api, "ingress")
    assert ing["metadata"]["labels"]["bucket"] == f"sitemaps-{G2}"
    assert ing["metadata"]["annotations"][NGINX] == f"/sitemaps-{G2}/$2"
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"  # left alone
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/sitemaps(/|$)(.*)"
    patches = kube_api.requests_for("PATCH")
    assert len(patches) == 2  # one patch per switch: label and annotation together
    assert patches[-1].content_type == "application/merge-patch+json"
    assert patches[-1].body["metadata"]["resourceVersion"]  # the precondition is sent
    assert router.describe() == f"ingress:{NS}/sitemaps label bucket ({kube_api.url})"


def test_labels_not_ours_mean_nothing_live(kube_api: KubeAPIServer, caplog: pytest.LogCaptureFixture) -> None:
    seed_ingress(kube_api, "someone-elses-bucket")
    router = ingress_router(kube_api)
    with caplog.at_level(logging.WARNING):
        assert router.current() is None
    assert "someone-elses-bucket" in caplog.text
    router.switch(G1, expected=None)  # taken over
    assert router.current() == G1
    seed_ingress(kube_api, f"sitemaps-staging-{G1}")  # a longer prefix: another deployment's
    assert router.current() is None
    seed_ingress(kube_api, "sitemaps-19700101-000000-000-0000")  # deploy/ingress.yaml's placeholder
    assert router.current() == "19700101-000000-000-0000"


def test_a_concurrent_writer_causes_a_retry_not_a_lost_update(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api, f"sitemaps-{G1}")

    class Raced(IngressRouter):
        raced = False

        def _get(self) -> dict[str, Any]:
            obj = super()._get()
            if not self.raced:  # another writer changes an unrelated field between our read and patch
                self.raced = True
                kube_api.modify(*INGRESS, lambda o: o["metadata"].setdefault("annotations", {}).update(x="y"))
            return obj

    Raced(kube_api.api_client(), NS, "sitemaps", Layout("sitemaps"), backoff=FAST).switch(G2, expected=G1)
    ing = kube_api.ingress("sitemaps", NS)
    assert ing is not None and ing["metadata"]["annotations"]["x"] == "y"
    assert ing["metadata"]["labels"]["bucket"] == f"sitemaps-{G2}"
    assert [r.status for r in kube_api.requests_for("PATCH")] == [409, 200]


def test_conflict_storm(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api, f"sitemaps-{G1}")
    router = ingress_router(kube_api)
    kube_api.fail_next(409, method="PATCH", times=FAST.attempts - 1)
    router.switch(G2, expected=G1)  # rides out a storm shorter than its attempts
    assert router.current() == G2
    kube_api.fail_next(409, method="PATCH", times=FAST.attempts)
    with pytest.raises(RouterError, match="409 Conflict; nothing was switched"):
        router.switch(G3, expected=G2)
    assert router.current() == G2


def test_transient_api_errors_are_retried(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api, f"sitemaps-{G1}")
    router = ingress_router(kube_api)
    kube_api.fail_next(503, method="GET", times=2)
    kube_api.fail_next(500, method="PATCH")
    router.switch(G2, expected=G1)
    assert router.current() == G2


def test_forbidden_names_the_permission(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api, f"sitemaps-{G1}")
    router = ingress_router(kube_api)
    kube_api.forbid("get", "ingresses")
    with pytest.raises(
        RouterError,
        match=r'forbidden to get Ingress "sitemaps" in namespace "web" .*cannot '
        r'get resource "ingresses".*verbs get and patch on ingresses\.'
        r"networking\.k8s\.io with resourceNames \[sitemaps\] in namespace "
        r"web",
    ):
        router.current()
    kube_api.allow()
    kube_api.forbid("patch", "ingresses")
    with pytest.raises(RouterError, match="forbidden to patch"):
        router.switch(G2, expected=G1)
    assert len(kube_api.requests_for("PATCH")) == 1  # not retried


def test_missing_object_is_named(kube_api: KubeAPIServer) -> None:
    with pytest.raises(RouterError, match=r'Ingress "sitemaps" in namespace "web" not found .*deploy/'):
        ingress_router(kube_api).current()
    with pytest.raises(RouterError, match=r'HTTPRoute "sitemaps" in namespace "web" not found'):
        route_router(kube_api).current()
    kube_api.fail_next(404, method="GET", body={"kind": "Status", "code": 404, "message": "page not found"})
    with pytest.raises(RouterError, match=r"does not serve gateway\.networking\.k8s\.io/v1 httproutes"):
        route_router(kube_api).current()


def test_rejected_credentials(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api)
    api = kube_api.api_client(token="wrong")
    router = IngressRouter(api, NS, "sitemaps", Layout("sitemaps"), backoff=FAST)
    with pytest.raises(RouterError, match="rejected our credentials") as ei:
        router.current()
    assert "wrong" not in str(ei.value)


def test_unreachable_api() -> None:
    router = IngressRouter(api_client("http://127.0.0.1:9"), NS, "sitemaps", Layout("sitemaps"), backoff=FAST)
    with pytest.raises(RouterError, match=r"cannot reach the Kubernetes API at http://127\.0\.0\.1:9"):
        router.current()


def test_annotation_templates(kube_api: KubeAPIServer) -> None:
    seed_ingress(kube_api)
    legacy = ingress_router(kube_api, annotation="ingress.kubernetes.io/rewrite-target", annotation_value="/{bucket}")
    legacy.switch(G1, expected=None)
    ann = kube_api.ingress("sitemaps", NS)["metadata"]["annotations"]  # type: ignore[index]
    assert ann["ingress.kubernetes.io/rewrite-target"] == f"/sitemaps-{G1}"
    one = Layout("sitemaps", "sitemaps-all")
    prefixed = ingress_router(kube_api, one, annotation_value="{path}/$2")
    prefixed.switch(G2, expected=G1)
    ing = kube_api.ingress("sitemaps", NS)
    assert ing is not None and ing["metadata"]["annotations"][NGINX] == f"/sitemaps-all/generations/{G2}/$2"
    assert ing["metadata"]["labels"]["bucket"] == f"sitemaps-{G2}"
    assert prefixed.current() == G2
    assert ingress_router(kube_api, annotation_value="{generation}").target(G3) == G3
    with pytest.raises(ValueError, match=r"only \{bucket\}, \{generation\} and \{path\}"):
        ingress_router(kube_api, annotation_value="/{bukket}/$2")
    with pytest.raises(ValueError, match="prefix layout"):
        ingress_router(kube_api, one)  # the default names the bucket only: every generation would look alike


@needs_kubectl
def test_httproute_switch(kube_api: KubeAPIServer) -> None:
    seed_route(kube_api, f"sitemaps-{G1}")
    router = route_router(kube_api)
    assert router.current() == G1
    router.switch(G2, expected=G1)
    route = kubectl_json(kube_api, "httproute")
    assert route["metadata"]["labels"]["bucket"] == f"sitemaps-{G2}"
    rewrite = route["spec"]["rules"][0]["filters"][0]["urlRewrite"]
    assert rewrite == {
        "hostname": "minio",
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": f"/sitemaps-{G2}"},
    }
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "sitemaps"  # the rest kept
    kube_api.fail_next(409, method="PATCH", times=2)
    route_router(kube_api, Layout("sitemaps", "one")).switch(G3, expected=G2)
    stored = kube_api.httproute("sitemaps", NS)
    assert stored is not None
    assert (
        stored["spec"]["rules"][0]["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] == f"/one/generations/{G3}"
    )


def test_httproute_without_rewrite_filter(kube_api: KubeAPIServer) -> None:
    kube_api.seed_httproute("sitemaps", NS)
    with pytest.raises(RouterError, match="no URLRewrite filter with a ReplacePrefixMatch"):
        route_router(kube_api).switch(G1, expected=None)
    assert not kube_api.requests_for("PATCH")


def test_client_configuration(kube_api: KubeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_ingress(kube_api, f"sitemaps-{G1}")
    settings = Settings(router="ingress", kube_api=kube_api.url, router_namespace=NS)
    router = open_router(settings)
    assert isinstance(router, IngressRouter) and router.current() == G1
    assert isinstance(open_router(settings.replace(router="httproute")), HTTPRouteRouter)
    # kubeconfig (KUBECONFIG), with its token
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig")))
    kube_api.clear_requests()
    assert open_router(settings.replace(kube_api=None)).current() == G1
    assert kube_api.requests[-1].headers["authorization"] == "Bearer test-token"
    # in a pod: the service account's token and CA, the API server from the environment
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token")
    (sa / "ca.crt").write_text("not checked here")
    cfg = api_client(
        None, sa, {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    ).configuration
    assert cfg.host == "https://127.0.0.1:6443" and cfg.ssl_ca_cert == str(sa / "ca.crt")
    assert cfg.api_key["BearerToken"] == "bearer pod-token"
    assert cfg.refresh_api_key_hook is not None  # bound tokens rotate: re-read
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(RouterError, match="set SITEMAPS_KUBE_API"):
        api_client(None, tmp_path / "no-serviceaccount")
