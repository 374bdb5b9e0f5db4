"""What the Kubernetes routers share: the API client, error messages that name the missing permission or
object, and the switch itself (read, check, patch with a resourceVersion precondition, retry on 409).

The live generation is the object's label (default `bucket`), holding `<prefix>-<generation id>`. A label
that is missing or not of that form means no generation of ours is live: `current()` is None, the next
publish renders everything and takes the router over. Each switch starts from the object as read, so an
operator's manual switch (or rollback) is respected, never overwritten by a stale plan.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, incluster_config, load_kube_config

from sitemap_keeper.snapshot import calls
from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.routers.base import Router, RouterConflict, RouterError

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_ACCOUNT = Path(incluster_config.SERVICE_TOKEN_FILENAME).parent
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read
MERGE_PATCH = "application/merge-patch+json"
BACKOFF = Backoff(attempts=8, base=0.05, cap=2.0)  # the API server answers fast: retry sooner than S3


def api_client(
    api_url: str | None, service_account: Path = SERVICE_ACCOUNT, environ: Mapping[str, str] | None = None
) -> k8s.ApiClient:
    """An explicit API URL (as served by `kubectl proxy`), else in-cluster config when a service account
    token is mounted, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    environ = os.environ if environ is None else environ
    cfg = k8s.Configuration()
    try:
        if api_url:
            cfg.host = api_url.rstrip("/")
        elif (service_account / "token").exists() and environ.get(incluster_config.SERVICE_HOST_ENV_NAME):
            incluster_config.InClusterConfigLoader(
                token_filename=str(service_account / "token"),
                cert_filename=str(service_account / "ca.crt"),
                environ=environ,
            ).load_and_set(cfg)
        else:
            load_kube_config(environ.get("KUBECONFIG") or None, client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        raise RouterError(
            f"no Kubernetes API configuration: set SITEMAPS_KUBE_API, run in a pod with a "
            f"service account, or provide a kubeconfig ({exc})"
        ) from None
    cfg.retries = False  # the routers retry whole reads and switches themselves
    return k8s.ApiClient(cfg)


@dataclass(frozen=True)
class ObjectRef:
    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str
    example: str  # the manifest in deploy/ that creates it

    def __str__(self) -> str:
        return f'{self.kind} "{self.name}" in namespace "{self.namespace}"'


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        return str(exc.reason or "")
    return str(body.get("message", "")) if isinstance(body, dict) else str(exc.reason or "")


def _is_status_of(exc: ApiException, ref: ObjectRef) -> bool:
    """A 404 about the object itself (a Status naming it), not about an API the cluster does not serve."""
    try:
        details = json.loads(exc.body).get("details", {})
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(details, dict) and details.get("name") == ref.name


class KubeRouter(Router):
    """A router that is one named object's label plus whatever fields `_changes` patches with it."""

    def __init__(
        self, api: k8s.ApiClient, ref: ObjectRef, layout: Layout, label: str = "bucket", backoff: Backoff | None = None
    ) -> None:
        self.api = api
        self.ref = ref
        self.layout = layout
        self.label = label
        self.backoff = backoff or BACKOFF

    @abstractmethod
    def _get(self) -> dict[str, Any]:
        """The object as the API returns it (JSON)."""

    @abstractmethod
    def _patch(self, body: dict[str, Any]) -> None:
        """Apply a JSON merge patch."""

    @abstractmethod
    def _changes(self, obj: dict[str, Any], gen_id: str) -> dict[str, Any]:
        """The merge patch, besides the label, that points the object at `gen_id`."""

    def describe(self) -> str:
        return (
            f"{self.ref.kind.lower()}:{self.ref.namespace}/{self.ref.name} label {self.label} "
            f"({self.api.configuration.host})"
        )

    def current(self) -> str | None:
        return self._generation(self._call("get", self._get))

    def switch(self, gen_id: str, expected: str | None) -> None:
        for attempt in range(1, self.backoff.attempts + 1):
            obj = self._call("get", self._get)
            now = self._generation(obj)
            if now not in (expected, gen_id):  # gen_id: our own earlier try went through after all
                raise RouterConflict(f"{self.ref} points at {now}, expected {expected}")
            body = self._changes(obj, gen_id)
            meta = body.setdefault("metadata", {})
            meta["resourceVersion"] = obj["metadata"]["resourceVersion"]  # the precondition: 409 if changed
            meta.setdefault("labels", {})[self.label] = self.layout.name(gen_id)
            try:
                self._call("patch", functools.partial(self._patch, body))
            except _Conflict:
                log.info("%s changed while switching (409); reading it again", self.ref)
                time.sleep(self.backoff.delay(attempt))
                continue
            log.info("%s now points at generation %s (was %s)", self.ref, gen_id, now)
            return
        raise RouterError(
            f"{self.ref} kept changing under us: {self.backoff.attempts} patches refused "
            f"with 409 Conflict; nothing was switched"
        )

    def _generation(self, obj: dict[str, Any]) -> str | None:
        value = (obj.get("metadata", {}).get("labels") or {}).get(self.label)
        gen_id = self.layout.generation(value)
        if value is not None and gen_id is None:
            log.warning(
                "%s label %s=%r is not %s: no generation of ours is live",
                self.ref,
                self.label,
                value,
                self.layout.name("<generation>"),
            )
        return gen_id

    def _call(self, verb: str, fn: Callable[[], T]) -> T:
        """Retry what may pass on a second try (5xx, 429, network); translate the rest."""
        for attempt in range(1, self.backoff.attempts + 1):
            try:
                result = fn()
                calls.record("kubernetes", "ok")
                return result
            except ApiException as exc:
                if exc.status == 409 and verb == "patch":
                    calls.record("kubernetes", "retried")  # read again and patch again
                    raise _Conflict from None
                if not (exc.status in (429, 500, 502, 503, 504) and attempt < self.backoff.attempts):
                    calls.record("kubernetes", "failed")
                    raise self._error(verb, exc) from None
                problem = f"{exc.status} {exc.reason}"
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt >= self.backoff.attempts:
                    calls.record("kubernetes", "failed")
                    raise RouterError(
                        f"cannot reach the Kubernetes API at {self.api.configuration.host} to "
                        f"{verb} {self.ref}: {type(exc).__name__}"
                    ) from None
                problem = type(exc).__name__
            calls.record("kubernetes", "retried")
            log.warning("Kubernetes %s %s: %s; retrying", verb, self.ref, problem)
            time.sleep(self.backoff.delay(attempt))
        raise AssertionError("unreachable")

    def _error(self, verb: str, exc: ApiException) -> RouterError:
        ref, message = self.ref, _status_message(exc)
        resource = f"{ref.plural}.{ref.group}"
        if exc.status == 403:
            return RouterError(
                f"forbidden to {verb} {ref} ({message}): the service account needs verbs get and patch on "
                f"{resource} with resourceNames [{ref.name}] in namespace {ref.namespace} "
                f"(see deploy/role*.yaml)"
            )
        if exc.status == 404 and _is_status_of(exc, ref):
            return RouterError(
                f"{ref} not found ({resource}): create it (see deploy/{ref.example}) or set "
                f"SITEMAPS_ROUTER_NAMESPACE and the object's name setting"
            )
        if exc.status == 404:
            return RouterError(
                f"the Kubernetes API does not serve {ref.group}/{ref.version} {ref.plural} "
                f"(404 on {verb} {ref}): is that API (or its CRD) installed?"
            )
        if exc.status == 401:
            return RouterError(
                f"the Kubernetes API rejected our credentials (401) to {verb} {ref}: check "
                f"the service account token or kubeconfig"
            )
        return RouterError(f"Kubernetes API refused to {verb} {ref}: {exc.status} {exc.reason}: {message}")


class _Conflict(Exception):
    """A patch refused with 409: the object changed since it was read."""


@contextmanager
def settings_errors() -> Iterator[None]:
    """A malformed router setting is a RouterError naming it, like any other router failure."""
    try:
        yield
    except ValueError as exc:
        raise RouterError(f"router settings: {exc}") from None


def layout_and_client(settings: Settings) -> tuple[Layout, k8s.ApiClient]:
    with settings_errors():
        layout = Layout.from_settings(settings)
    return layout, api_client(settings.kube_api)
