"""The stand-in server: its test controls, its objects, and the verbs it answers over HTTP."""

from __future__ import annotations

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.services.kube.resources import (
    MERGE_PATCH,
    RESOURCE_TYPES,
    STRATEGIC_MERGE_PATCH,
    ApiError,
    ResourceType,
    conflict,
    details,
    discovery,
    find_type,
    forbidden_message,
    merge_patch,
    not_allowed,
    not_found,
    status_object,
    version,
)
from tests.services.ports import LOCALHOST, LocalServer

Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name


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


@dataclass
class ForcedResponse:
    """A queued answer for the next ``times`` requests matching ``method``/``path`` (a regex searched in the
    path without its query)."""

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

    def matches(self, verb: str, rt: ResourceType) -> bool:
        return self.verb in ("*", verb) and self.resource in ("*", rt.plural, rt.group_resource)


@dataclass
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeAPIServer(LocalServer):
    """The stand-in server.  ``url`` is ``http://127.0.0.1:PORT``; its objects are in memory."""

    def __init__(
        self,
        token: str = "test-token",
        port: int = 0,
        user: str = "system:serviceaccount:default:sitemaps",
        git_version: str = "v1.32.0",
    ) -> None:
        self.token = token
        self.user = user
        self.git_version = git_version  # kubectl on this machine has 1.27-1.33
        self.host = LOCALHOST
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.forced: list[ForcedResponse] = []
        self.denials: list[Denial] = []
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rv = 100
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="kube-standin-"))

    # -- lifecycle --------------------------------------------------------------------------------------
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

    # -- clients ----------------------------------------------------------------------------------------
    def kubeconfig(self, path: str | Path | None = None, namespace: str = "default", token: str | None = None) -> Path:
        """Write a kubeconfig (JSON, which is YAML) for kubectl and ``kubernetes.config``."""
        p = Path(path) if path is not None else self._tmp / "kubeconfig"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": token if token is not None else self.token}}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in", "namespace": namespace}}
            ],
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(cfg, indent=2))
        return p

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"BearerToken": token if token is not None else self.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` against this server (its own kubeconfig and discovery cache)."""
        exe = shutil.which("kubectl")
        if exe is None:
            raise FileNotFoundError("kubectl not found on PATH")
        kubeconfig = self._tmp / "kubeconfig"
        if not kubeconfig.exists():
            self.kubeconfig(kubeconfig)
        argv = [exe, f"--kubeconfig={kubeconfig}", f"--cache-dir={self._tmp / 'kubectl-cache'}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    # -- test controls ----------------------------------------------------------------------------------
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
        ``Status`` body (or ``body``), before anything else is checked; ``delay`` seconds first."""
        fr = ForcedResponse(status, method, path, times, reason, message, delay, body)
        with self._lock:
            self.forced.append(fr)
        return fr

    def forbid(self, verb: str, resource: str) -> Denial:
        """Deny ``verb`` (``get``, ``list``, ``create``, ``update``, ``patch`` or ``*``) on ``resource`` (plural,
        ``plural.group`` or ``*``) with a 403 as RBAC does."""
        d = Denial(verb, resource)
        with self._lock:
            self.denials.append(d)
        return d

    def allow(self) -> None:
        """Remove every denial."""
        with self._lock:
            self.denials = []

    def requests_for(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The requests received, filtered by method and path regex."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
            ]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- objects, behind the API's back -----------------------------------------------------------------
    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.group, rt.plural, (namespace or "") if rt.namespaced else "", name)

    def seed(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (apiVersion, kind, metadata.name; metadata.namespace defaults to "default") as if
        created, replacing one of that name.  Returns the stored copy."""
        rt = find_type(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        with self._lock:
            if rt.namespaced:
                self._ensure_namespace(meta["namespace"])
            key = self._key(rt, meta.get("namespace"), meta["name"])
            old = self._objects.get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old else _now())
            if rt.has_generation:
                meta["generation"] = int(meta.get("generation") or 1)
            meta["resourceVersion"] = self._bump()
            self._objects[key] = obj
            return copy.deepcopy(obj)

    def _ensure_namespace(self, name: str) -> None:
        """A namespace springs into being when something is put in it (kubectl reads it on a NotFound)."""
        key = self._key(find_type("v1", "Namespace"), None, name)
        if key not in self._objects:
            self._objects[key] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "status": {"phase": "Active"},
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _now(),
                    "resourceVersion": self._bump(),
                },
            }

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (a copy) or None."""
        rt = find_type(api_version, kind)
        with self._lock:
            obj = self._objects.get(self._key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def modify(
        self, api_version: str, kind: str, namespace: str | None, name: str, fn: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Change a stored object as another writer would (``fn`` mutates a copy in place): resourceVersion
        is bumped, and generation when the spec changed.  Provokes 409s."""
        rt = find_type(api_version, kind)
        with self._lock:
            key = self._key(rt, namespace, name)
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
        """Remove a stored object; whether there was one."""
        with self._lock:
            return self._objects.pop(self._key(find_type(api_version, kind), namespace, name), None) is not None

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
    ) -> dict[str, Any]:
        """An Ingress routing ``host`` + ``path`` (Prefix) to ``service:port``."""
        backend = {"service": {"name": service, "port": {"number": port}}}
        paths = [{"path": path, "pathType": "Prefix", "backend": backend}]
        spec = {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": paths}}]}
        return self.seed(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": _meta(name, namespace, labels, annotations),
                "spec": spec,
                "status": {"loadBalancer": {}},
            }
        )

    def seed_httproute(
        self,
        name: str,
        namespace: str = "default",
        *,
        path: str = "/sitemaps",
        service: str = "sitemaps",
        port: int = 80,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An HTTPRoute attached to Gateway "gateway", routing ``path`` (PathPrefix) to ``service:port``."""
        spec = {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gateway"}],
            "hostnames": ["www.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": service, "port": port, "weight": 1}],
                }
            ],
        }
        return self.seed(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": _meta(name, namespace, labels, None),
                "spec": spec,
            }
        )

    # -- requests (from the handler threads) -----------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        decoded: Any = None
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = body
        rec = RecordedRequest(method, path, query, headers.get("content-type"), decoded, headers)
        with self._lock:
            self.requests.append(rec)
            forced = next((f for f in self.forced if f.used < f.times and f.matches(method, path)), None)
            if forced is not None:
                forced.used += 1
                if forced.used >= forced.times:
                    self.forced.remove(forced)
        if forced is not None:
            time.sleep(forced.delay)
            resp = Response(
                forced.status,
                forced.body
                or status_object(forced.status, forced.message or f"injected {forced.status}", forced.reason),
            )
        else:
            try:
                resp = self._dispatch(method, path, query, headers, decoded)
            except ApiError as e:
                resp = Response(e.code, status_object(e.code, e.message, e.reason, e.details))
        rec.status = resp.status
        return resp

    def _route(self, path: str) -> Route | str | None:
        """A resource route, a discovery key (str) or None (a path not served)."""
        segs = [s for s in path.split("/") if s]
        if segs in (["version"], ["api"], ["apis"]):
            return segs[0]
        if segs[:1] == ["api"] and len(segs) >= 2:
            group, ver, rest = "", segs[1], segs[2:]
        elif segs[:1] == ["apis"] and len(segs) == 2:
            return f"group:{segs[1]}"
        elif segs[:1] == ["apis"]:
            group, ver, rest = segs[1], segs[2], segs[3:]
        else:
            return None  # /openapi too: kubectl get and patch do without it
        types = {rt.plural: rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == ver}
        if not types:
            return None
        if not rest:
            return f"resources:{group}/{ver}"
        if rest[0] == "namespaces" and len(rest) in (3, 4) and rest[2] in types and types[rest[2]].namespaced:
            return Route(types[rest[2]], rest[1], rest[3] if len(rest) == 4 else None)
        if len(rest) <= 2 and rest[0] in types and not types[rest[0]].namespaced:
            return Route(types[rest[0]], None, rest[1] if len(rest) == 2 else None)
        return None

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any
    ) -> Response:
        route = self._route(path)
        if route == "version":
            return Response(200, version(self.git_version))
        # kubectl (client-go) never sends a token over plain http; the Python client always does
        auth = headers.get("authorization")
        if auth is not None and auth != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if route is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if isinstance(route, str):
            if method != "GET":
                raise not_allowed()
            return Response(200, discovery(route, f"{self.host}:{self.port}"))
        rt, ns, name = route.rt, route.namespace, route.name
        if any(q in query for q in ("watch", "labelSelector", "fieldSelector", "dryRun")):
            raise ApiError(400, f"{sorted(query)}: not served by the test stand-in", "BadRequest")
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
        if verb is None or (verb == "create" and name) or (verb in ("update", "patch") and not name):
            raise not_allowed(rt, name)
        with self._lock:
            if any(d.matches(verb, rt) for d in self.denials):
                raise ApiError(403, forbidden_message(self.user, verb, rt, ns, name), "Forbidden", details(rt, name))
            if verb == "get":
                return Response(200, self._get_or_404(rt, ns, name or ""))
            if verb == "list":
                return Response(200, self._list(rt, ns))
            if verb == "create":
                return self._create(rt, ns, body)
            if verb == "update":
                return self._replace(rt, ns, name or "", body)
            return self._patch(rt, ns, name or "", headers.get("content-type", ""), body)

    # -- verbs (lock held) -------------------------------------------------------------------------------
    def _get_or_404(self, rt: ResourceType, ns: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(rt, ns, name))
        if obj is None:
            raise not_found(rt, name)
        return copy.deepcopy(obj)

    def _list(self, rt: ResourceType, ns: str | None) -> dict[str, Any]:
        items = []
        for (group, plural, namespace, _), obj in sorted(self._objects.items()):
            if (group, plural) == (rt.group, rt.plural) and ns in (None, namespace):
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

    @staticmethod
    def _checked(rt: ResourceType, ns: str | None, body: Any) -> dict[str, Any]:
        """A copy of a request's object, with its type and namespace checked and filled in."""
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request could not be decoded as a JSON object", "BadRequest")
        if body.get("kind") not in (None, rt.kind) or body.get("apiVersion") not in (None, rt.api_version):
            raise ApiError(
                400,
                f"the API version in the data ({body.get('apiVersion')}) does not match the "
                f"expected API version ({rt.api_version})",
                "BadRequest",
            )
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                    "BadRequest",
                )
            meta["namespace"] = ns
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    def _create(self, rt: ResourceType, ns: str | None, body: Any) -> Response:
        obj = self._checked(rt, ns, body)
        meta = obj["metadata"]
        name = meta.get("name")
        if not name:
            raise ApiError(
                422,
                f'{rt.kind} "" is invalid: metadata.name: Required value: name or generateName is required',
                "Invalid",
                {**details(rt, None), "kind": rt.kind},
            )
        key = self._key(rt, ns, name)
        if key in self._objects:
            raise ApiError(409, f'{rt.group_resource} "{name}" already exists', "AlreadyExists", details(rt, name))
        if rt.namespaced and ns:
            self._ensure_namespace(ns)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._bump())
        if rt.has_generation:
            meta["generation"] = 1
        self._objects[key] = obj
        return Response(201, copy.deepcopy(obj))

    def _replace(self, rt: ResourceType, ns: str | None, name: str, body: Any) -> Response:
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            raise not_found(rt, name)
        return self._update(rt, ns, name, old, self._checked(rt, ns, body), require_rv=rt.custom)

    def _patch(self, rt: ResourceType, ns: str | None, name: str, ctype: str, body: Any) -> Response:
        media = ctype.split(";")[0].strip().lower()
        accepted = [MERGE_PATCH] if rt.custom else [MERGE_PATCH, STRATEGIC_MERGE_PATCH]
        if media not in accepted:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(accepted)} (of those the stand-in serves)",
                "UnsupportedMediaType",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "error decoding patch: a merge patch must be a JSON object", "BadRequest")
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            raise not_found(rt, name)
        new = merge_patch(old, body, strategic=media == STRATEGIC_MERGE_PATCH)
        return self._update(rt, ns, name, old, self._checked(rt, ns, new), require_rv=False)

    def _update(
        self, rt: ResourceType, ns: str | None, name: str, old: dict[str, Any], new: dict[str, Any], require_rv: bool
    ) -> Response:
        """PUT and PATCH alike: the resourceVersion precondition, the server's own fields, a write that changes
        nothing left a no-op (no new resourceVersion), as the real server does."""
        meta, old_meta = new["metadata"], old["metadata"]
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
                "BadRequest",
            )
        rv = meta.get("resourceVersion")
        if rv in (None, "") and require_rv:
            raise ApiError(
                422,
                f'{rt.kind}.{rt.group} "{name}" is invalid: metadata.resourceVersion: Invalid '
                "value: 0x0: must be specified for an update",
                "Invalid",
                {**details(rt, name), "kind": rt.kind},
            )
        if rv not in (None, "") and str(rv) != old_meta["resourceVersion"]:
            raise conflict(rt, name)
        meta.update(
            name=name,
            uid=old_meta["uid"],
            creationTimestamp=old_meta["creationTimestamp"],
            resourceVersion=old_meta["resourceVersion"],
        )
        if rt.has_generation:
            generation = int(old_meta.get("generation", 1))
            meta["generation"] = generation + 1 if new.get("spec") != old.get("spec") else generation
        if new == old:
            return Response(200, copy.deepcopy(new))
        meta["resourceVersion"] = self._bump()
        self._objects[self._key(rt, ns, name)] = new
        return Response(200, copy.deepcopy(new))


def _meta(
    name: str, namespace: str, labels: dict[str, str] | None, annotations: dict[str, str] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


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

    def _serve(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = self.api.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the stand-in: answer 500 rather than hang the client
            resp = Response(500, status_object(500, f"stand-in error: {exc!r}"))
        data = json.dumps(resp.body).encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
