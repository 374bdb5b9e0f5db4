"""Who may publish and prune when several replicas run.

Every replica applies events (the consumer group shares the partitions); publishing and pruning take
`Manifest.locks.publish()` whatever the election, which on PostgreSQL is a session advisory lock: the
`postgres` election is just that (a replica that finds it held skips its turn). SQLite means one process.
`lease` adds a Kubernetes Lease (coordination.k8s.io): only its holder even tries, so replicas do not race
for the lock, and `kubectl get lease` shows who publishes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.snapshot.routers.kube import api_client

log = logging.getLogger(__name__)

ELECTIONS = ("postgres", "lease", "none")


class Leader:
    """No election of our own: every replica may try, the manifest's publish lock lets one in at a time."""

    def is_leader(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class LeaseLeader(Leader):
    """Hold a Lease, renewed from a thread of its own (a long publish must not starve the renewal)."""

    def __init__(
        self, api: k8s.CoordinationV1Api, name: str, namespace: str, identity: str, duration: int = 15
    ) -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.held_until = 0.0  # monotonic
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sitemaps-lease", daemon=True)

    def is_leader(self) -> bool:
        return time.monotonic() < self.held_until

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        if self.is_leader():
            self._release()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                if self.try_acquire():
                    # A margin: stop believing before the others may take over.
                    self.held_until = started + self.duration * 2 / 3
            except Exception as exc:  # the API is down: keep what we had until it runs out
                log.warning("lease %s/%s: %r", self.namespace, self.name, exc)
            self.stopping.wait(self.duration / 5)

    def try_acquire(self) -> bool:
        """Acquire or renew the lease; False while another holder's lease runs."""
        now = datetime.now(UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name), spec=self._spec(now, now, 0))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as exc2:
                if exc2.status == 409:  # another replica created it first
                    return False
                raise
            log.info("lease %s/%s created; %s publishes", self.namespace, self.name, self.identity)
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        renewed = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self.duration
        mine = spec.holder_identity == self.identity
        if not mine and spec.holder_identity and renewed and renewed + timedelta(seconds=duration) > now:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(spec.acquire_time if mine and spec.acquire_time else now, now, transitions)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)  # resourceVersion: no races
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if not mine:
            log.info("lease %s/%s taken over by %s", self.namespace, self.name, self.identity)
        return True

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> k8s.V1LeaseSpec:
        return k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration,
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

    def _release(self) -> None:
        """Let another replica take over at once rather than after the lease runs out."""
        self.held_until = 0.0
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("could not release lease %s/%s: %r", self.namespace, self.name, exc)


def identity() -> str:
    """The pod name (HOSTNAME in Kubernetes), and the process, so that two processes never share it."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


def open_leader(settings: ServiceSettings) -> Leader:
    if settings.leader_election not in ELECTIONS:
        raise ValueError(f"leader election must be one of {', '.join(ELECTIONS)}, got {settings.leader_election!r}")
    if settings.leader_election != "lease":
        return Leader()
    api = k8s.CoordinationV1Api(api_client(settings.kube_api))
    return LeaseLeader(api, settings.lease_name, settings.lease_namespace, identity())
