"""A Kubernetes API server stand-in: a threaded HTTP server that behaves as the real one does where the
routers (Ingress, HTTPRoute), the leader election (Lease), the official ``kubernetes`` Python client and
``kubectl get``/``patch`` depend on it.

- resources.py: the types served (Ingress, HTTPRoute, Lease; Namespace for discovery), the API's ``Status``
  errors, merge patches, and discovery in the legacy format (kubectl 1.32 asks for the aggregated one first,
  gets plain JSON and falls back; /openapi answers 404, which ``get`` and ``patch`` do without).
- server.py: :class:`KubeAPIServer`: its test controls and its objects, and the verbs get, list, create,
  replace (PUT) and patch (merge and strategic merge patches; the latter refused with 415 for custom
  resources, as the real server does) over plain HTTP on 127.0.0.1.

Semantics kept from the real API server: ``metadata.resourceVersion`` comes from one global counter and a
write that changes nothing is a no-op (200, the same resourceVersion); ``metadata.generation`` follows spec
changes (Ingress, HTTPRoute); a PUT, or a merge patch carrying ``metadata.resourceVersion``, whose version is
not the stored one is a 409 ``Conflict``; a PUT without one is an unconditional update for built-in types but
422 ``Invalid`` for custom resources; errors are ``Status`` objects (404 ``NotFound``, 409
``AlreadyExists``/``Conflict``, 403 ``Forbidden`` with the RBAC text, 401 ``Unauthorized`` for a wrong bearer
token). A request without a token is served: kubectl (client-go) sends none over plain http. What is not
served (watch, selectors, dry runs, delete, JSON patch) is refused with a Status that says so, never ignored.

Test controls: :meth:`~KubeAPIServer.seed`, :meth:`~KubeAPIServer.get` and :meth:`~KubeAPIServer.modify`
change objects behind the API's back; :meth:`~KubeAPIServer.fail_next` forces answers,
:meth:`~KubeAPIServer.forbid` denies as RBAC does, :attr:`~KubeAPIServer.requests` records every request;
:meth:`~KubeAPIServer.kubeconfig`, :meth:`~KubeAPIServer.api_client` and :meth:`~KubeAPIServer.kubectl` are
its clients.
"""

from tests.services.kube.resources import status_object
from tests.services.kube.server import KubeAPIServer, RecordedRequest, Response

__all__ = ["KubeAPIServer", "RecordedRequest", "Response", "status_object"]
