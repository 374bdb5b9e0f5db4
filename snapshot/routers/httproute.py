"""The Gateway API router (`gateway.networking.k8s.io/v1` HTTPRoute), for clusters that moved off Ingress.

The label names the live generation, as with the Ingress; every `URLRewrite` filter whose path rewrite is
`ReplacePrefixMatch` is pointed at the generation's objects (`/<bucket>`, or `/<bucket>/generations/<id>`
in the prefix layout), in the same patch.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s

from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.routers.kube import REQUEST_TIMEOUT, KubeRouter, ObjectRef, layout_and_client

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings


class HTTPRouteRouter(KubeRouter):
    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        name: str,
        layout: Layout,
        label: str = "bucket",
        backoff: Backoff | None = None,
    ) -> None:
        ref = ObjectRef("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespace, name, "httproute.yaml")
        super().__init__(api, ref, layout, label, backoff)
        self.custom = k8s.CustomObjectsApi(api)

    @classmethod
    def from_settings(cls, settings: Settings) -> HTTPRouteRouter:
        layout, api = layout_and_client(settings)
        return cls(api, settings.router_namespace, settings.httproute_name, layout, settings.router_label)

    def _args(self) -> tuple[str, str, str, str, str]:
        return self.ref.group, self.ref.version, self.ref.namespace, self.ref.plural, self.ref.name

    def _get(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(*self._args(), _request_timeout=REQUEST_TIMEOUT)
        return obj

    def _patch(self, body: dict[str, Any]) -> None:
        # CustomObjectsApi sends a JSON merge patch: `rules` (a list) is replaced whole, hence read first.
        self.custom.patch_namespaced_custom_object(*self._args(), body, _request_timeout=REQUEST_TIMEOUT)

    def _changes(self, obj: dict[str, Any], gen_id: str) -> dict[str, Any]:
        rules = copy.deepcopy(obj.get("spec", {}).get("rules") or [])
        rewrites = [
            f["urlRewrite"]["path"]
            for rule in rules
            for f in rule.get("filters") or []
            if f.get("type") == "URLRewrite"
            and ((f.get("urlRewrite") or {}).get("path") or {}).get("type") == "ReplacePrefixMatch"
        ]
        if not rewrites:
            raise RouterError(
                f"{self.ref} has no URLRewrite filter with a ReplacePrefixMatch path to point "
                f"at a generation (see deploy/httproute.yaml)"
            )
        for path in rewrites:
            path["replacePrefixMatch"] = self.layout.path(gen_id)
        return {"spec": {"rules": rules}}
