"""A Kubernetes API server stand-in: a threaded HTTP server that behaves like the real one where it
matters for the official ``kubernetes`` Python client (< 37) and for ``kubectl``.

Served (plain HTTP on 127.0.0.1, bearer-token auth):

* auth: a request with a wrong ``Authorization`` header gets 401 ``Unauthorized``.  A request with
  none is served, like the API server's old insecure port, because **kubectl (client-go) never sends
  bearer tokens over plain http** (it only attaches credentials on TLS connections), so with an
  ``http://`` kubeconfig kubectl's requests arrive without a token while the Python client does send
  ``Authorization: Bearer <token>``.  ``require_auth=True`` makes a token mandatory (then kubectl
  cannot be used).  The ``kubectl`` on this machine is Google Cloud SDK's dispatcher: it reads
  ``/version`` and runs the matching ``kubectl.1.NN`` (1.27-1.33 installed), so keep ``git_version``
  in that range (default v1.32.0).

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}``, ``/apis/{group}/{version}``
  in the *legacy* (non-aggregated) format -- kubectl 1.32 asks for aggregated discovery first, gets
  plain ``application/json`` and falls back, as against an old server.  ``/openapi/v2`` and
  ``/openapi/v3`` answer 404; ``kubectl get/patch/replace/create/delete`` cope with that,
  ``kubectl apply`` / ``explain`` (which need OpenAPI) are not supported.
* objects (any registered type, see :data:`RESOURCE_TYPES`): Ingress, HTTPRoute, Gateway, Lease,
  ConfigMap, Service, Namespace, IngressClass, GatewayClass -- get, list (``labelSelector`` with
  ``k=v``/``k!=v``/``k``/``!k``, ``fieldSelector`` ``metadata.name``/``metadata.namespace``), create
  (POST, ``generateName``), replace (PUT), patch, delete, the ``/status`` subresource, ``dryRun=All``.

Semantics copied from the real API server:

* ``metadata.resourceVersion`` is a string integer from one global counter, bumped by every write
  that changes the object.  Like the real server, a write that changes nothing (e.g. a merge patch
  setting a label to the value it already has) is a no-op: 200 with the unchanged object and
  resourceVersion.
* ``metadata.generation`` (Ingress, HTTPRoute, Gateway, IngressClass, GatewayClass) starts at 1 and is
  bumped when ``spec`` changes (not for metadata-only or status changes).
* ``status`` can only be changed through ``/status`` for types with a status subresource; writes to
  the main resource keep the stored status (and ``/status`` writes change nothing but status).
* PUT, and PATCH whose resulting object carries a ``metadata.resourceVersion`` (merge patch with it,
  JSON patch ``replace`` of it) different from the stored one -> 409 ``Conflict``.  PUT without
  resourceVersion is an unconditional update for built-in types but 422 ``Invalid`` for custom
  resources (HTTPRoute, Gateway), like CRDs.  PUT of a missing object -> 404, except Lease, which is
  created (``AllowCreateOnUpdate``).
* PATCH content types: ``application/merge-patch+json`` (RFC 7386);
  ``application/strategic-merge-patch+json`` is applied as a merge patch (lists replaced, ``$``
  directives dropped) for built-in types and rejected with 415 for custom resources, like the real
  server; ``application/json-patch+json`` (RFC 6902, incl. ``test``): a failed ``test`` or an op on a
  missing path -> 422 ``Invalid`` "the server rejected our request due to an error in our request"
  (like the real server, the Status does not say which op failed; the stand-in keeps the jsonpatch
  error in ``RecordedRequest.note``); a malformed patch -> 400.  ``apply-patch`` -> 415.
* The kubernetes Python client chooses the PATCH content type from the body:
  ``NetworkingV1Api.patch_namespaced_ingress(name, ns, body=dict)`` sends
  ``application/strategic-merge-patch+json`` (a ``list`` body is sent as
  ``application/json-patch+json``); ``CustomObjectsApi.patch_namespaced_custom_object`` always sends
  ``application/merge-patch+json``.  ``_content_type=`` overrides either.
* Errors are ``Status`` objects: 404 ``NotFound`` (``ingresses.networking.k8s.io "x" not found``),
  409 ``AlreadyExists``/``Conflict``, 403 ``Forbidden`` with the RBAC message, 401 ``Unauthorized``.
* Namespaces ``default``, ``kube-system``, ``kube-public`` exist; any other namespace is created
  implicitly when an object is seeded or created in it (the real server would answer 404 for a
  missing namespace).  ``watch`` is not implemented (405).

Test controls: :meth:`KubeAPIServer.seed` / :meth:`get` / :meth:`list_objects` / :meth:`modify` /
:meth:`delete` for objects
behind the API's back; :meth:`fail_next` (forced responses), :meth:`forbid` (RBAC denials),
:attr:`requests` (everything received), :meth:`kubeconfig`, :meth:`api_client`, :meth:`kubectl`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .ports import LOCALHOST, LocalServer

JSON = Any  # a decoded JSON value


# --------------------------------------------------------------------------------------------------
# resource types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    has_generation: bool = False
    status_subresource: bool = False
    custom: bool = False  # CRD semantics (no strategic merge patch, PUT needs resourceVersion)
    create_on_update: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``ingresses.networking.k8s.io`` / ``configmaps`` as used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), status_subresource=True
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType(
        "", "v1", "services", "Service", short_names=("svc",), status_subresource=True, categories=("all",)
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        short_names=("ing",),
        has_generation=True,
        status_subresource=True,
    ),
    ResourceType(
        "networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False, has_generation=True
    ),
    ResourceType(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "HTTPRoute",
        has_generation=True,
        status_subresource=True,
        custom=True,
        categories=("gateway-api",),
    ),
    ResourceType(
        "gateway.networking.k8s.io",
        "v1",
        "gateways",
        "Gateway",
        short_names=("gtw",),
        has_generation=True,
        status_subresource=True,
        custom=True,
        categories=("gateway-api",),
    ),
    ResourceType(
        "gateway.networking.k8s.io",
        "v1",
        "gatewayclasses",
        "GatewayClass",
        namespaced=False,
        short_names=("gc",),
        has_generation=True,
        status_subresource=True,
        custom=True,
        categories=("gateway-api",),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", create_on_update=True),
)

VERBS = ["create", "delete", "get", "list", "patch", "update"]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _find_type(api_version: str, kind_or_plural: str) -> ResourceType:
    for rt in RESOURCE_TYPES:
        if rt.api_version == api_version and kind_or_plural in (rt.kind, rt.plural, rt.singular):
            return rt
    raise KeyError(f"resource type {api_version} {kind_or_plural} is not registered")


# --------------------------------------------------------------------------------------------------
# errors / Status
# --------------------------------------------------------------------------------------------------

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """Raised inside the server to answer with a ``Status``."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details
        self.note = note  # recorded on the request, not sent


def status_object(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` as the real API server sends it for failures."""
    st: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        st["details"] = details
    return st


def _details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": rt.plural}
    if name:
        d["name"] = name
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.group_resource} "{name}" not found', "NotFound", _details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        _details(rt, name),
    )


def forbidden_message(
    user: str,
    verb: str,
    rt: ResourceType,
    namespace: str | None,
    name: str | None,
    subresource: str | None = None,
) -> str:
    """The RBAC denial text of the real API server."""
    what = f'{rt.group_resource} "{name}"' if name else rt.group_resource
    resource = f"{rt.plural}/{subresource}" if subresource else rt.plural
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{rt.group}" {scope}'
    )


# --------------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------------


class JsonPatchError(Exception):
    def __init__(self, message: str, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


def merge_patch(target: JSON, patch: JSON, strategic: bool = False) -> JSON:
    """RFC 7386 JSON merge patch (``strategic`` additionally drops ``$``-directive keys)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if strategic and k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v, strategic)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise JsonPatchError(f"invalid JSON pointer {path!r}", malformed=True)
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise KeyError(token)
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise KeyError(token)
    return i


def _resolve_parent(doc: JSON, tokens: list[str]) -> JSON:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, False)]
        else:
            raise KeyError(t)
    return cur


def _get(doc: JSON, tokens: list[str]) -> JSON:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, False)]
    raise KeyError(last)


def json_patch(doc: JSON, ops: JSON) -> JSON:
    """RFC 6902 JSON patch; error texts follow evanphx/json-patch (used by the API server)."""
    if not isinstance(ops, list):
        raise JsonPatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", True)
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise JsonPatchError("json patch operation is missing 'op'", malformed=True)
        kind = op["op"]
        path = op.get("path")
        tokens = _pointer(path)

        def missing(what: str = "path", kind: str = kind, path: Any = path) -> JsonPatchError:
            return JsonPatchError(f"{kind} operation does not apply: doc is missing {what}: {path}")

        if kind == "test":
            try:
                current = _get(doc, tokens)
            except (KeyError, IndexError, TypeError):
                raise JsonPatchError(f"testing value {path} failed: test failed") from None
            if current != op.get("value"):
                raise JsonPatchError(f"testing value {path} failed: test failed")
            continue
        if kind in ("add", "replace") and "value" not in op:
            raise JsonPatchError(f"{kind} operation missing 'value'", malformed=True)
        if kind in ("move", "copy"):
            try:
                value = copy.deepcopy(_get(doc, _pointer(op.get("from"))))
            except (KeyError, IndexError, TypeError):
                raise missing("from path") from None
            if kind == "move":
                doc = _remove(doc, _pointer(op.get("from")), "move", op.get("from"))
            doc = _add(doc, tokens, value, kind, path)
        elif kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), kind, path)
        elif kind == "remove":
            doc = _remove(doc, tokens, kind, path)
        elif kind == "replace":
            if not tokens:
                doc = copy.deepcopy(op["value"])
                continue
            try:
                parent = _resolve_parent(doc, tokens)
                if isinstance(parent, dict):
                    if tokens[-1] not in parent:
                        raise KeyError(tokens[-1])
                    parent[tokens[-1]] = copy.deepcopy(op["value"])
                elif isinstance(parent, list):
                    parent[_index(parent, tokens[-1], False)] = copy.deepcopy(op["value"])
                else:
                    raise KeyError(tokens[-1])
            except (KeyError, IndexError, TypeError):
                raise JsonPatchError(
                    f"replace operation does not apply: doc is missing key: {path}"
                ) from None
        else:
            raise JsonPatchError(f"Unexpected kind: {kind}", malformed=True)
    return doc


def _add(doc: JSON, tokens: list[str], value: JSON, kind: str, path: Any) -> JSON:
    if not tokens:
        return value
    try:
        parent = _resolve_parent(doc, tokens)
        if isinstance(parent, dict):
            parent[tokens[-1]] = value
        elif isinstance(parent, list):
            parent.insert(_index(parent, tokens[-1], True), value)
        else:
            raise KeyError(tokens[-1])
    except (KeyError, IndexError, TypeError):
        raise JsonPatchError(f"{kind} operation does not apply: doc is missing path: {path}") from None
    return doc


def _remove(doc: JSON, tokens: list[str], kind: str, path: Any) -> JSON:
    try:
        parent = _resolve_parent(doc, tokens)
        if isinstance(parent, dict):
            del parent[tokens[-1]]
        elif isinstance(parent, list):
            del parent[_index(parent, tokens[-1], False)]
        else:
            raise KeyError(tokens[-1])
    except (KeyError, IndexError, TypeError):
        raise JsonPatchError(f"{kind} operation does not apply: doc is missing path: {path}") from None
    return doc


# --------------------------------------------------------------------------------------------------
# selectors
# --------------------------------------------------------------------------------------------------


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for raw in filter(None, (s.strip() for s in selector.split(","))):
        m = re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(\S*)", raw)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                if labels.get(key) == value:
                    return False
            elif labels.get(key) != value:
                return False
        elif raw.startswith("!"):
            if raw[1:] in labels:
                return False
        elif m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", raw):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and labels[key] in values
            if (op == "in") != present:
                return False
        elif raw not in labels:
            return False
    return True


def _field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata", {})
    for raw in filter(None, (s.strip() for s in selector.split(","))):
        m = re.fullmatch(r"([^!=]+)(==|=|!=)(.*)", raw)
        if not m:
            raise ApiError(400, f'invalid field selector: "{raw}"')
        key, op, value = m.groups()
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}.get(key)
        if (actual == value) == (op == "!="):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as received (``body`` is decoded JSON when it parses, else raw bytes/None)."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    headers: dict[str, str]
    status: int = 0
    note: str | None = None  # e.g. the jsonpatch error behind a 422


@dataclass
class ForcedResponse:
    """A queued answer for the next ``times`` requests matching ``method``/``path`` (regex, searched
    in the path without query)."""

    status: int
    method: str | None = None
    path: str | None = None
    times: int = 1
    reason: str | None = None
    message: str | None = None
    delay: float = 0.0
    body: dict[str, Any] | None = None
    used: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(frozen=True)
class Denial:
    verb: str  # "*" for all verbs
    resource: str  # plural, "plural.group", or "*"
    namespace: str | None = None
    name: str | None = None

    def matches(self, verb: str, rt: ResourceType, namespace: str | None, name: str | None) -> bool:
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", rt.plural, rt.group_resource)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


@dataclass
class _Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class _Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeAPIServer(LocalServer):
    """The stand-in server.  ``url`` is ``http://127.0.0.1:PORT``; state is in memory."""

    def __init__(
        self,
        token: str = "test-token",
        port: int = 0,
        user: str = "system:serviceaccount:default:sitemaps",
        require_auth: bool = False,
        git_version: str = "v1.32.0",
    ) -> None:
        self.token = token
        self.user = user
        self.require_auth = require_auth
        self.git_version = git_version
        self.host = LOCALHOST
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.forced: list[ForcedResponse] = []
        self.denials: list[Denial] = []
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._rv = 100
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="kube-standin-"))
        for ns in ("default", "kube-system", "kube-public"):
            self._ensure_namespace(ns)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> KubeAPIServer:
        server = self

        class Handler(_Handler):
            api = server

        self._httpd = _QuietServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kube-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- client helpers ----------------------------------------------------------------------------
    def kubeconfig(
        self, path: str | Path | None = None, namespace: str = "default", token: str | None = None
    ) -> Path:
        """Write a kubeconfig (JSON, which is YAML) for kubectl and ``kubernetes.config``."""
        p = Path(path) if path is not None else self._tmp / "kubeconfig"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": token if token is not None else self.token}}],
            "contexts": [
                {
                    "name": "stand-in",
                    "context": {"cluster": "stand-in", "user": "stand-in", "namespace": namespace},
                }
            ],
            "current-context": "stand-in",
            "preferences": {},
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(cfg, indent=2))
        return p

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server (host ``http://127.0.0.1:PORT``)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"BearerToken": token if token is not None else self.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``kubectl`` binary against this server (own kubeconfig and discovery cache dir)."""
        exe = shutil.which("kubectl")
        if exe is None:
            raise FileNotFoundError("kubectl not found on PATH")
        kubeconfig = self._tmp / "kubeconfig"
        if not kubeconfig.exists():
            self.kubeconfig(kubeconfig)
        argv = [exe, f"--kubeconfig={kubeconfig}", f"--cache-dir={self._tmp / 'kubectl-cache'}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, input=input)

    # -- test controls -----------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
        body: dict[str, Any] | None = None,
    ) -> ForcedResponse:
        """Answer the next ``times`` requests matching ``method``/``path`` (regex) with ``status`` and a
        ``Status`` body (or ``body``), before anything else is checked.  ``delay`` seconds first."""
        fr = ForcedResponse(status, method, path, times, reason, message, delay, body)
        with self._lock:
            self.forced.append(fr)
        return fr

    def forbid(
        self, verb: str, resource: str, namespace: str | None = None, name: str | None = None
    ) -> Denial:
        """Deny ``verb`` (``get``/``list``/``create``/``update``/``patch``/``delete``/``*``) on
        ``resource`` (plural, ``plural.group`` or ``*``) with a 403 like RBAC."""
        d = Denial(verb, resource, namespace, name)
        with self._lock:
            self.denials.append(d)
        return d

    def allow(self, verb: str | None = None, resource: str | None = None) -> None:
        """Remove denials (all of them when called without arguments)."""
        with self._lock:
            self.denials = [
                d
                for d in self.denials
                if not ((verb is None or d.verb == verb) and (resource is None or d.resource == resource))
            ]

    def requests_for(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests filtered by method and path regex."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path))
            ]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- object store (Python side) ----------------------------------------------------------------
    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str, str, str]:
        return (rt.group, rt.plural, namespace or "", name)

    def seed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (needs apiVersion, kind, metadata.name, and metadata.namespace when namespaced,
        default "default") as if created; replaces an existing one.  Returns the stored copy."""
        rt = _find_type(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        with self._lock:
            old = self._objects.get(self._key(rt, meta.get("namespace"), meta["name"]))
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old else _now())
            if rt.has_generation:
                meta["generation"] = int(meta.get("generation") or 1)
            if rt.namespaced:
                self._ensure_namespace(meta["namespace"])
            meta["resourceVersion"] = self._bump()
            self._objects[self._key(rt, meta.get("namespace"), meta["name"])] = obj
            return copy.deepcopy(obj)

    def _ensure_namespace(self, name: str) -> None:
        """Namespaces spring into existence when something is put in them (lock held)."""
        rt = _find_type("v1", "Namespace")
        key = self._key(rt, None, name)
        if key not in self._objects:
            self._objects[key] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _now(),
                    "labels": {"kubernetes.io/metadata.name": name},
                    "resourceVersion": self._bump(),
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (a copy) or None."""
        rt = _find_type(api_version, kind)
        with self._lock:
            obj = self._objects.get(self._key(rt, namespace if rt.namespaced else None, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, api_version: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            objs = [copy.deepcopy(o) for o in self._objects.values()]
        return [
            o
            for o in objs
            if (api_version is None or o["apiVersion"] == api_version) and (kind is None or o["kind"] == kind)
        ]

    def modify(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        fn: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Change a stored object as another writer would (``fn`` mutates a copy in place); bumps
        resourceVersion, and generation when spec changed.  Use it to provoke 409s."""
        rt = _find_type(api_version, kind)
        with self._lock:
            key = self._key(rt, namespace if rt.namespaced else None, name)
            old = self._objects.get(key)
            if old is None:
                raise KeyError(f"{rt.group_resource} {namespace}/{name} not found")
            new = copy.deepcopy(old)
            fn(new)
            if rt.has_generation and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            new["metadata"]["resourceVersion"] = self._bump()
            self._objects[key] = new
            return copy.deepcopy(new)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        rt = _find_type(api_version, kind)
        with self._lock:
            return (
                self._objects.pop(self._key(rt, namespace if rt.namespaced else None, name), None) is not None
            )

    def ingress(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get("networking.k8s.io/v1", "Ingress", namespace, name)

    def httproute(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get("gateway.networking.k8s.io/v1", "HTTPRoute", namespace, name)

    def lease(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get("coordination.k8s.io/v1", "Lease", namespace, name)

    def seed_ingress(
        self,
        name: str,
        namespace: str = "default",
        *,
        host: str = "www.example.com",
        path: str = "/sitemaps",
        service: str = "sitemaps",
        port: int = 80,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        ingress_class: str | None = "nginx",
    ) -> dict[str, Any]:
        """An Ingress routing ``host`` + ``path`` (Prefix) to ``service:port``."""
        spec: dict[str, Any] = {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": port}}},
                            }
                        ]
                    },
                }
            ],
        }
        if ingress_class:
            spec["ingressClassName"] = ingress_class
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        return self.seed(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": meta,
                "spec": spec,
                "status": {"loadBalancer": {}},
            }
        )

    def seed_httproute(
        self,
        name: str,
        namespace: str = "default",
        *,
        hostnames: list[str] | None = None,
        path: str = "/sitemaps",
        service: str = "sitemaps",
        port: int = 80,
        gateway: str = "gateway",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An HTTPRoute attached to Gateway ``gateway`` routing ``path`` (PathPrefix) to ``service:port``."""
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if labels:
            meta["labels"] = dict(labels)
        if annotations:
            meta["annotations"] = dict(annotations)
        spec = {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}],
            "hostnames": list(hostnames or ["www.example.com"]),
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": service, "port": port, "weight": 1}
                    ],
                }
            ],
        }
        return self.seed(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": meta,
                "spec": spec,
            }
        )

    # -- request handling (called from handler threads) ------------------------------------------
    def _route(self, path: str) -> _Route | str | None:
        """A resource route, a discovery key (str) or None (unknown path)."""
        segs = [s for s in path.split("/") if s]
        if not segs:
            return "root"
        if segs in (["version"], ["healthz"], ["livez"], ["readyz"], ["api"], ["apis"]):
            return segs[0]
        if segs[0] == "openapi":
            return None
        if segs[0] == "api":
            if len(segs) < 2:
                return None
            group, version, rest = "", segs[1], segs[2:]
        elif segs[0] == "apis":
            if len(segs) == 2:
                return f"group:{segs[1]}"
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return None
        types = [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]
        if not types:
            return None
        if not rest:
            return f"resources:{group}/{version}"
        by_plural = {rt.plural: rt for rt in types}
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and rest[2] in by_plural
            and by_plural[rest[2]].namespaced
        ):
            rt, ns, tail = by_plural[rest[2]], rest[1], rest[3:]
        elif rest[0] in by_plural:
            rt, ns, tail = by_plural[rest[0]], None, rest[1:]
        else:
            return None
        if len(tail) > 2 or (len(tail) == 2 and tail[1] != "status"):
            return None
        name = tail[0] if tail else None
        sub = tail[1] if len(tail) == 2 else None
        if sub == "status" and not rt.status_subresource:
            return None
        if rt.namespaced and ns is None and name is not None:
            return None  # namespaced object addressed without namespace
        return _Route(rt, ns, name, sub)

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Response:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        ctype = headers.get("content-type")
        decoded: Any = None
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = body
        rec = RecordedRequest(method, path, query, ctype, decoded, headers)
        with self._lock:
            self.requests.append(rec)
            forced = next((f for f in self.forced if f.used < f.times and f.matches(method, path)), None)
            if forced is not None:
                forced.used += 1
                if forced.used >= forced.times:
                    self.forced.remove(forced)
        if forced is not None:
            if forced.delay:
                time.sleep(forced.delay)
            resp = _Response(
                forced.status,
                forced.body
                or status_object(forced.status, forced.message or f"injected {forced.status}", forced.reason),
            )
        else:
            try:
                resp = self._dispatch(method, path, query, headers, body, decoded)
            except ApiError as e:
                resp = _Response(e.code, status_object(e.code, e.message, e.reason, e.details))
                rec.note = e.note
        rec.status = resp.status
        return resp

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        raw: bytes,
        body: Any,
    ) -> _Response:
        route = self._route(path)
        if route in ("version", "healthz", "livez", "readyz"):
            if route == "version":
                return _Response(200, self._version())
            return _Response(200, "ok")
        auth = headers.get("authorization")
        if (auth is None and self.require_auth) or (auth is not None and auth != f"Bearer {self.token}"):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if route is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if isinstance(route, str):
            if method != "GET":
                raise ApiError(
                    405,
                    "the server does not allow this method on the requested resource",
                    "MethodNotAllowed",
                    {},
                )
            return _Response(200, self._discovery(route))
        rt, ns, name, sub = route.rt, route.namespace, route.name, route.subresource

        def one(q: str) -> str | None:
            values = query.get(q)
            return values[-1] if values else None

        if one("watch") in ("true", "1"):
            raise ApiError(405, "watch is not supported by the test stand-in", "MethodNotAllowed")
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method)
        if verb is None or (verb == "create" and name) or verb == "deletecollection":
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                "MethodNotAllowed",
                _details(rt, name),
            )
        with self._lock:
            # like RBAC, a create is authorized without a name (a name-restricted denial never matches it)
            denied = any(d.matches(verb, rt, ns, name) for d in self.denials)
        if denied:
            raise ApiError(
                403, forbidden_message(self.user, verb, rt, ns, name, sub), "Forbidden", _details(rt, name)
            )
        dry_run = one("dryRun") == "All"
        with self._lock:
            if verb == "get":
                return _Response(200, self._get_or_404(rt, ns, name or ""))
            if verb == "list":
                return _Response(200, self._list(rt, ns, one("labelSelector"), one("fieldSelector")))
            if verb == "create":
                return self._create(rt, ns, body, dry_run)
            if verb == "update":
                return self._replace(rt, ns, name or "", sub, body, dry_run)
            if verb == "patch":
                return self._patch(
                    rt, ns, name or "", sub, headers.get("content-type", ""), raw, body, dry_run
                )
            return self._delete(rt, ns, name or "", body, dry_run)

    def _version(self) -> dict[str, Any]:
        m = re.match(r"v(\d+)\.(\d+)", self.git_version)
        major, minor = (m.group(1), m.group(2)) if m else ("1", "32")
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.git_version,
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rt in RESOURCE_TYPES:
            if rt.group and rt.version not in groups.setdefault(rt.group, []):
                groups[rt.group].append(rt.version)
        return groups

    def _group_obj(self, group: str, versions: list[str]) -> dict[str, Any]:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def _discovery(self, key: str) -> dict[str, Any]:
        if key == "root":
            paths = ["/api", "/api/v1", "/apis", "/version"]
            for g, vs in self._groups().items():
                paths += [f"/apis/{g}"] + [f"/apis/{g}/{v}" for v in vs]
            return {"paths": sorted(paths)}
        if key == "api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                ],
            }
        if key == "apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group_obj(g, vs) for g, vs in self._groups().items()],
            }
        if key.startswith("group:"):
            g = key[len("group:") :]
            group_versions = self._groups().get(g)
            if not group_versions:
                raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group_obj(g, group_versions)}
        gv = key[len("resources:") :]
        group, _, version = gv.partition("/")
        resources: list[dict[str, Any]] = []
        for rt in RESOURCE_TYPES:
            if rt.group != group or rt.version != version:
                continue
            r: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": VERBS,
            }
            if rt.short_names:
                r["shortNames"] = list(rt.short_names)
            if rt.categories:
                r["categories"] = list(rt.categories)
            resources.append(r)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv.strip("/") or version,
            "resources": resources,
        }

    # -- verbs (lock held) -------------------------------------------------------------------------
    def _get_or_404(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(rt, ns, name))
        if obj is None:
            raise not_found(rt, name)
        return copy.deepcopy(obj)

    def _list(
        self, rt: ResourceType, ns: str | None, labels: str | None, fields: str | None
    ) -> dict[str, Any]:
        items = []
        for (g, plural, ons, _), obj in sorted(self._objects.items()):
            if g != rt.group or plural != rt.plural or (ns is not None and ons != ns):
                continue
            if labels and not _label_selector_matches(labels, obj.get("metadata", {}).get("labels") or {}):
                continue
            if fields and not _field_selector_matches(fields, obj):
                continue
            item = copy.deepcopy(obj)
            if not rt.custom:  # built-in list items carry no apiVersion/kind on the wire
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _check_body(self, rt: ResourceType, ns: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request could not be decoded as a JSON object", "BadRequest")
        if body.get("kind") not in (None, rt.kind) or body.get("apiVersion") not in (None, rt.api_version):
            raise ApiError(
                400,
                f"the API version in the data ({body.get('apiVersion')}) does not match the "
                f"expected API version ({rt.api_version})",
                "BadRequest",
            )
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object", "BadRequest")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                    "BadRequest",
                )
            meta["namespace"] = ns
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        checked: dict[str, Any] = body
        return checked

    def _create(self, rt: ResourceType, ns: str | None, body: Any, dry_run: bool) -> _Response:
        obj = self._check_body(rt, ns, body)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(
                    422,
                    f'{rt.kind} "" is invalid: metadata.name: Required value: name or '
                    "generateName is required",
                    "Invalid",
                    {**_details(rt, None), "kind": rt.kind},
                )
        name = meta["name"]
        key = self._key(rt, ns, name)
        if key in self._objects:
            raise ApiError(
                409, f'{rt.group_resource} "{name}" already exists', "AlreadyExists", _details(rt, name)
            )
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        for k in ("deletionTimestamp", "managedFields"):
            meta.pop(k, None)
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.status_subresource:  # create ignores status, like the real strategies
            obj.pop("status", None)
        if dry_run:
            meta["resourceVersion"] = ""
            return _Response(201, obj)
        if rt.namespaced and ns:
            self._ensure_namespace(ns)
        meta["resourceVersion"] = self._bump()
        self._objects[key] = obj
        return _Response(201, copy.deepcopy(obj))

    def _store_update(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        sub: str | None,
        old: dict[str, Any],
        new: dict[str, Any],
        require_rv: bool,
        dry_run: bool,
    ) -> _Response:
        """Shared by PUT and PATCH: precondition, server-managed fields, no-op detection, store."""
        meta = new.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
                "BadRequest",
            )
        rv = meta.get("resourceVersion")
        old_meta = old["metadata"]
        if rv in (None, ""):
            if require_rv:
                raise ApiError(
                    422,
                    f'{rt.kind}.{rt.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0x0: must be specified for an update",
                    "Invalid",
                    {**_details(rt, name), "kind": rt.kind},
                )
        elif str(rv) != old_meta["resourceVersion"]:
            raise conflict(rt, name)
        if sub == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            if rt.status_subresource:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
        rmeta = result["metadata"]
        rmeta["name"] = name
        if rt.namespaced:
            rmeta["namespace"] = ns
        else:
            rmeta.pop("namespace", None)
        rmeta["uid"] = old_meta["uid"]
        rmeta["creationTimestamp"] = old_meta["creationTimestamp"]
        rmeta["resourceVersion"] = old_meta["resourceVersion"]
        if rt.has_generation:
            gen = int(old_meta.get("generation", 1))
            rmeta["generation"] = gen + 1 if result.get("spec") != old.get("spec") else gen
        else:
            rmeta.pop("generation", None)
        result["apiVersion"], result["kind"] = rt.api_version, rt.kind
        if result == old or dry_run:
            return _Response(200, copy.deepcopy(result))
        rmeta["resourceVersion"] = self._bump()
        self._objects[self._key(rt, ns, name)] = result
        return _Response(200, copy.deepcopy(result))

    def _replace(
        self, rt: ResourceType, ns: str | None, name: str, sub: str | None, body: Any, dry_run: bool
    ) -> _Response:
        new = self._check_body(rt, ns, body)
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            if rt.create_on_update and sub is None:
                new["metadata"].setdefault("name", name)
                if new["metadata"]["name"] != name:
                    raise ApiError(
                        400,
                        f"the name of the object ({new['metadata']['name']}) does not match the "
                        f"name on the URL ({name})",
                        "BadRequest",
                    )
                new["metadata"].pop("resourceVersion", None)
                return self._create(rt, ns, new, dry_run)
            raise not_found(rt, name)
        return self._store_update(rt, ns, name, sub, old, new, require_rv=rt.custom, dry_run=dry_run)

    def _patch(
        self,
        rt: ResourceType,
        ns: str | None,
        name: str,
        sub: str | None,
        ctype: str,
        raw: bytes,
        body: Any,
        dry_run: bool,
    ) -> _Response:
        media = ctype.split(";")[0].strip().lower()
        accepted = [JSON_PATCH, MERGE_PATCH, "application/apply-patch+yaml"]
        if not rt.custom:
            accepted.insert(2, STRATEGIC_MERGE_PATCH)
        if media not in accepted or media == "application/apply-patch+yaml":
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(accepted),
                "UnsupportedMediaType",
            )
        if isinstance(body, bytes) or body is None:
            raise ApiError(400, f"error decoding patch: invalid JSON: {raw[:100]!r}", "BadRequest")
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            raise not_found(rt, name)
        if media == JSON_PATCH:
            try:
                new = json_patch(old, body)
            except JsonPatchError as e:
                if e.malformed:
                    raise ApiError(400, str(e), "BadRequest") from None
                # the real server's Status carries no trace of the jsonpatch error (kubectl prints "The
                # request is invalid: the server rejected ..."); keep it on the recorded request instead
                raise ApiError(
                    422,
                    "the server rejected our request due to an error in our request",
                    "Invalid",
                    {"causes": []},
                    note=str(e),
                ) from None
        else:
            if not isinstance(body, dict):
                raise ApiError(400, "error decoding patch: merge patch must be a JSON object", "BadRequest")
            new = merge_patch(old, body, strategic=media == STRATEGIC_MERGE_PATCH)
        if not isinstance(new, dict):
            raise ApiError(400, "patched object is not a JSON object", "BadRequest")
        new = self._check_body(rt, ns, new)
        return self._store_update(rt, ns, name, sub, old, new, require_rv=False, dry_run=dry_run)

    def _delete(self, rt: ResourceType, ns: str | None, name: str, body: Any, dry_run: bool) -> _Response:
        key = self._key(rt, ns, name)
        old = self._objects.get(key)
        if old is None:
            raise not_found(rt, name)
        pre = (body or {}).get("preconditions") or {} if isinstance(body, dict) else {}
        if pre.get("resourceVersion") not in (None, old["metadata"]["resourceVersion"]):
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {rt.group_resource} "{name}": Precondition '
                f"failed: ResourceVersion: Precondition failed",
                "Conflict",
                _details(rt, name),
            )
        if pre.get("uid") not in (None, old["metadata"]["uid"]):
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {rt.group_resource} "{name}": Precondition '
                f"failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{old['metadata']['uid']}",
                "Conflict",
                _details(rt, name),
            )
        if not dry_run:
            del self._objects[key]
            self._bump()
        if rt.custom:
            return _Response(200, copy.deepcopy(old))
        return _Response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {**_details(rt, name), "uid": old["metadata"]["uid"]},
            },
        )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients closing kept-alive connections is normal, not worth a traceback in the test output.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: KubeAPIServer
    protocol_version = "HTTP/1.1"
    server_version = "kube-standin"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = self.api.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the stand-in: answer 500 rather than hang the client
            resp = _Response(500, status_object(500, f"stand-in error: {exc!r}"))
        if isinstance(resp.body, str):
            data, ctype = resp.body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(resp.body).encode(), "application/json"
        self.send_response(resp.status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


@contextlib.contextmanager
def running_kube_api(**kw: Any) -> Iterator[KubeAPIServer]:
    srv = KubeAPIServer(**kw).start()
    try:
        yield srv
    finally:
        srv.stop()
