"""pytest fixtures for the real local test servers (register with
``pytest_plugins = ["tests.services.plugin"]``).

Servers are started once per session (per xdist worker) and stopped at session end; every child
process also dies with the test process (process groups + atexit + PDEATHSIG, see ``ports.py``).
Function-scoped wrappers restart a session server that a test stopped, and hand out unique
buckets / topics so tests never see each other's data.

==========================  =========  ===========================================================
fixture                     scope      value
==========================  =========  ===========================================================
``moto_s3``                 session    :class:`~tests.services.s3.MotoS3Server`
``rclone_s3``               session    :class:`~tests.services.s3.RcloneS3Server`
``s3_server``               function   parametrized ``["moto", "rclone"]``: one of the two above
``s3_bucket``               function   name of a fresh, empty bucket on ``s3_server`` (deleted after)
``s3_bucket_prefix``        function   a unique lowercase prefix for bucket names/keys of this test
``fault_proxy_factory``     function   ``make(upstream: str) -> FaultProxy`` (all stopped after)
``s3_fault_proxy``          function   a :class:`~tests.services.faultproxy.FaultProxy` in front of
                                       ``s3_server``
``kafka_broker``            function   the session :class:`~tests.services.kafka.TansuBroker`
                                       (restarted if a test left it down)
``fresh_kafka_broker``      function   a private TansuBroker, for kill/restart tests
``new_topic``               function   ``make(partitions: int = 1) -> str``: creates a unique topic
``kube_api``                function   a fresh :class:`~tests.services.kube.KubeAPIServer`
==========================  =========  ===========================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from .ports import unique_name

if TYPE_CHECKING:  # the real imports are deferred to the fixtures (see pytest_configure)
    from .faultproxy import FaultProxy
    from .kafka import TansuBroker
    from .kube import KubeAPIServer
    from .s3 import MotoS3Server, RcloneS3Server, S3Server

S3_KINDS = ["moto", "rclone"]


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0 loads its protocol schemas with the deprecated importlib.resources API at
    # import time: ~200 identical warnings per run that say nothing about this project.  (Only
    # effective when kafka is first imported after this hook, hence the deferred imports here.)
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


# -- S3 ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    from .s3 import MotoS3Server

    srv = MotoS3Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def rclone_s3() -> Iterator[RcloneS3Server]:
    from .s3 import RcloneS3Server

    srv = RcloneS3Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=S3_KINDS, ids=S3_KINDS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """The moto and the rclone S3 server in turn (session-scoped servers; use ``s3_bucket`` or
    ``s3_server.new_bucket()`` for isolation)."""
    srv: S3Server = request.getfixturevalue(f"{request.param}_s3")
    if not srv.running:
        srv.start()
    return srv


@pytest.fixture
def s3_bucket_prefix() -> str:
    return unique_name("t", 8) + "-"


@pytest.fixture
def s3_bucket(s3_server: S3Server, s3_bucket_prefix: str) -> Iterator[str]:
    name = s3_server.new_bucket(s3_bucket_prefix)
    yield name
    with contextlib.suppress(Exception):
        s3_server.delete_bucket(name)


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[[str], FaultProxy]]:
    from .faultproxy import FaultProxy

    proxies: list[FaultProxy] = []

    def make(upstream: str) -> FaultProxy:
        p = FaultProxy(upstream).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture
def s3_fault_proxy(s3_server: S3Server, fault_proxy_factory: Callable[[str], FaultProxy]) -> FaultProxy:
    """A fault proxy in front of ``s3_server``: ``s3_server.client(s3_fault_proxy.endpoint, retries=0)``."""
    return fault_proxy_factory(s3_server.endpoint)


# -- Kafka -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _kafka_broker_session() -> Iterator[TansuBroker]:
    from .kafka import TansuBroker

    broker = TansuBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def kafka_broker(_kafka_broker_session: TansuBroker) -> TansuBroker:
    """The shared broker.  Memory storage: never kill/restart it in a test that shares it (use
    ``fresh_kafka_broker``); if one did, it is restarted (empty) here."""
    if not _kafka_broker_session.running:
        _kafka_broker_session.start()
    return _kafka_broker_session


@pytest.fixture
def fresh_kafka_broker() -> Iterator[TansuBroker]:
    from .kafka import TansuBroker

    broker = TansuBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def new_topic(kafka_broker: TansuBroker) -> Callable[..., str]:
    def make(partitions: int = 1) -> str:
        return kafka_broker.create_topic(None, partitions)

    return make


# -- Kubernetes --------------------------------------------------------------------------------------


@pytest.fixture
def kube_api() -> Iterator[KubeAPIServer]:
    from .kube import KubeAPIServer

    srv = KubeAPIServer()
    srv.start()
    yield srv
    srv.stop()
