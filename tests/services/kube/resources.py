"""What the stand-in serves: the resource types, the API's Status errors, merge patches and discovery."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

JSON = Any  # a decoded JSON value
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
VERBS = ["create", "get", "list", "patch", "update"]


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_generation: bool = False  # metadata.generation follows spec changes
    custom: bool = False  # CRD semantics: no strategic merge patch, PUT needs a resourceVersion

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``ingresses.networking.k8s.io`` as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


# What the routers and the leader election use; Namespace only so that kubectl finds the core group.
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", has_generation=True),
    ResourceType("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", has_generation=True, custom=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
)


def find_type(api_version: str, kind_or_plural: str) -> ResourceType:
    for rt in RESOURCE_TYPES:
        if rt.api_version == api_version and kind_or_plural in (rt.kind, rt.plural, rt.singular):
            return rt
    raise KeyError(f"resource type {api_version} {kind_or_plural} is not registered")


# -- errors as the API server sends them -----------------------------------------------------------------

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """Raised inside the server to answer with a ``Status``."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details


def status_object(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure ``Status`` as the real API server sends it."""
    st: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        st["details"] = details
    return st


def details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": rt.plural}
    if name:
        d["name"] = name
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.group_resource} "{name}" not found', "NotFound", details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "Conflict",
        details(rt, name),
    )


def not_allowed(rt: ResourceType | None = None, name: str | None = None) -> ApiError:
    return ApiError(
        405,
        "the server does not allow this method on the requested resource",
        "MethodNotAllowed",
        details(rt, name) if rt else {},
    )


def forbidden_message(user: str, verb: str, rt: ResourceType, namespace: str | None, name: str | None) -> str:
    """The RBAC denial text of the real API server."""
    what = f'{rt.group_resource} "{name}"' if name else rt.group_resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return f'{what} is forbidden: User "{user}" cannot {verb} resource "{rt.plural}" in API group "{rt.group}" {scope}'


# -- patches ----------------------------------------------------------------------------------------------


def merge_patch(target: JSON, patch: JSON, strategic: bool = False) -> JSON:
    """RFC 7386 JSON merge patch (``strategic``: also drop ``$`` directives, lists replaced whole)."""
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


# -- discovery (the legacy, non-aggregated format: kubectl falls back to it) --------------------------------


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return groups


def _group(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def discovery(key: str, address: str) -> dict[str, Any]:
    """The answer to a discovery path: "api", "apis", "group:<g>" or "resources:<g>/<v>"."""
    if key == "api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }
    if key == "apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, vs) for g, vs in _groups().items()]}
    if key.startswith("group:"):
        versions = _groups().get(key[len("group:") :])
        if not versions:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(key[len("group:") :], versions)}
    gv = key[len("resources:") :]
    group, _, version = gv.partition("/")
    resources = [
        {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind, "verbs": VERBS}
        for rt in RESOURCE_TYPES
        if rt.group == group and rt.version == version
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv.strip("/") or version,
        "resources": resources,
    }


def version(git_version: str) -> dict[str, Any]:
    """/version: kubectl on this machine (Google Cloud SDK's dispatcher) runs the kubectl.1.NN it names."""
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
