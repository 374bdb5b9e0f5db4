"""The router contract (snapshot/routers/base.py), one behaviour a test, run against every backend: the local
symlink, a Kubernetes Ingress and a Gateway API HTTPRoute (on the API stand-in, tests/services/kube.py). A new
router joins by adding itself to `BACKENDS`; the objects' shape, RBAC and API failures are tested beside each
router (tests/test_routers.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sitemap_keeper.snapshot.routers import Router, RouterConflict, open_router
from sitemap_keeper.snapshot.settings import Settings
from tests.services.kube import KubeAPIServer

G1, G2, G3 = "20240101-000000-000-0001", "20240102-000000-000-0002", "20240103-000000-000-0003"
BACKENDS = ["local", "ingress", "httproute"]


@dataclass
class Backend:
    """A router, and another one opened from the same settings (a second process, an operator's tool)."""

    open: Callable[[], Router]

    def __post_init__(self) -> None:
        self.router = self.open()


def seed(kube: KubeAPIServer, kind: str) -> None:
    """The object deploy/ creates, in the namespace and name the settings default to, not yet pointed anywhere."""
    if kind == "ingress":
        kube.seed_ingress("sitemaps")
        return
    kube.seed_httproute("sitemaps")
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    kube.modify(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "default",
        "sitemaps",
        lambda o: o["spec"]["rules"][0].update(filters=[rewrite]),
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A router of each kind before its first switch, through the factory the commands use (`open_router`)."""
    if request.param == "local":
        yield Backend(lambda: open_router(Settings(data_dir=tmp_path)))
        return
    kube: KubeAPIServer = request.getfixturevalue("kube_api")
    seed(kube, request.param)
    yield Backend(lambda: open_router(Settings(router=request.param, kube_api=kube.url)))


def test_nothing_is_live_before_the_first_switch(backend: Backend) -> None:
    assert backend.router.current() is None


def test_a_switch_makes_the_generation_current(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    assert backend.router.current() == G1


def test_each_switch_moves_on_from_the_last(backend: Backend) -> None:
    router = backend.router
    for before, after in ((None, G1), (G1, G2), (G2, G3), (G3, G1)):  # back to an older one: a rollback
        router.switch(after, expected=before)
        assert router.current() == after


def test_a_switch_is_seen_by_every_reader(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    assert backend.open().current() == G1


def test_a_switch_from_a_stale_generation_is_refused_and_changes_nothing(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    backend.open().switch(G2, expected=G1)  # someone else switched meanwhile
    with pytest.raises(RouterConflict, match=f"points at {G2}, expected {G1}"):
        backend.router.switch(G3, expected=G1)
    assert backend.router.current() == G2


def test_a_first_switch_over_a_live_generation_is_refused(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    with pytest.raises(RouterConflict):
        backend.open().switch(G2, expected=None)
    assert backend.router.current() == G1


def test_a_switch_repeated_after_it_went_through_is_accepted(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    backend.router.switch(G2, expected=G1)
    backend.router.switch(G2, expected=G1)  # a retry whose first try went through, its answer lost
    assert backend.router.current() == G2


def test_readers_during_switches_always_see_a_generation(backend: Backend) -> None:
    backend.router.switch(G1, expected=None)
    seen: set[str | None] = set()
    done = threading.Event()

    def read() -> None:
        reader = backend.open()
        while not done.is_set():
            seen.add(reader.current())

    thread = threading.Thread(target=read)
    thread.start()
    try:
        live = G1
        for _ in range(15):
            new = G3 if live == G2 else G2
            backend.router.switch(new, expected=live)
            live = new
    finally:
        done.set()
        thread.join()
    assert seen and seen <= {G1, G2, G3}


def test_describe_names_the_router(backend: Backend) -> None:
    assert backend.router.describe()
