"""The Ingress router (`networking.k8s.io/v1`): the label names the live generation, and an annotation,
patched with it, rewrites requests to the generation's objects.

The annotation value is a template: `{bucket}` is the bucket holding the generation, `{generation}` its id,
`{path}` its objects path-style (`/<bucket>`, or `/<bucket>/generations/<id>` in the prefix layout). The
default, `/{bucket}/$2`, is the ingress-nginx form for the path `/sitemaps(/|$)(.*)`; the legacy
`ingress.kubernetes.io/rewrite-target: /{bucket}` form and the prefix layout's `{path}/$2` are described in
deploy/README.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s

from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.routers.kube import (
    MERGE_PATCH,
    REQUEST_TIMEOUT,
    KubeRouter,
    ObjectRef,
    layout_and_client,
    settings_errors,
)

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

EXAMPLE_ID = "20240101-000000-000-0000"


def check_template(template: str, layout: Layout) -> None:
    try:
        template.format(**layout.placeholders(EXAMPLE_ID))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"ingress annotation value {template!r}: only {{bucket}}, {{generation}} and {{path}} may be used ({exc!r})"
        ) from None
    if layout.bucket is not None and "{generation}" not in template and "{path}" not in template:
        raise ValueError(
            f"ingress annotation value {template!r} names no generation: in the prefix layout "
            f"use {{path}} (e.g. {{path}}/$2)"
        )


class IngressRouter(KubeRouter):
    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        name: str,
        layout: Layout,
        label: str = "bucket",
        annotation: str = "nginx.ingress.kubernetes.io/rewrite-target",
        annotation_value: str = "/{bucket}/$2",
        backoff: Backoff | None = None,
    ) -> None:
        check_template(annotation_value, layout)
        ref = ObjectRef("networking.k8s.io", "v1", "ingresses", "Ingress", namespace, name, "ingress.yaml")
        super().__init__(api, ref, layout, label, backoff)
        self.annotation = annotation
        self.annotation_value = annotation_value
        self.networking = k8s.NetworkingV1Api(api)

    @classmethod
    def from_settings(cls, settings: Settings) -> IngressRouter:
        layout, api = layout_and_client(settings)
        with settings_errors():
            return cls(
                api,
                settings.router_namespace,
                settings.ingress_name,
                layout,
                settings.router_label,
                settings.ingress_annotation,
                settings.ingress_annotation_value,
            )

    def target(self, gen_id: str) -> str:
        return self.annotation_value.format(**self.layout.placeholders(gen_id))

    def _get(self) -> dict[str, Any]:
        resp = self.networking.read_namespaced_ingress(
            self.ref.name, self.ref.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        obj: dict[str, Any] = json.loads(resp.data)
        return obj

    def _patch(self, body: dict[str, Any]) -> None:
        self.networking.patch_namespaced_ingress(
            self.ref.name,
            self.ref.namespace,
            body,
            _content_type=MERGE_PATCH,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )

    def _changes(self, obj: dict[str, Any], gen_id: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {self.annotation: self.target(gen_id)}}}
