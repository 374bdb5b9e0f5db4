"""The deployments the crash harness runs the real CLI against: SQLite or PostgreSQL manifest, local store
served by `sitemaps serve` or moto S3 behind the Kubernetes API stand-in's Ingress; and how each is read
back over HTTP, the way a crawler reaches it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import fresh_pg_database
from tests.harness.served import Fetch, Observation, Switched, observe
from tests.services.kube import KubeAPIServer
from tests.services.ports import ManagedProcess, unique_name, wait_for
from tests.services.s3 import MotoS3Server

HOST = "librer.io"
BASE = "http://127.0.0.1:8080/sitemaps/"  # the public base URL in the indexes; nothing listens there
NAMESPACE = "web"
REWRITE = "nginx.ingress.kubernetes.io/rewrite-target"
PLACEHOLDER = "19700101-000000-000-0000"  # the generation deploy/ingress.yaml ships with
DATABASES = ("sqlite", "postgresql")
STORES = ("local", "s3")


@dataclass
class Deployment:
    name: str  # e.g. "sqlite-s3"
    env: dict[str, str]
    data_dir: Path
    moto: MotoS3Server | None = None
    kube: KubeAPIServer | None = None
    prefix: str = ""
    serve_url: str = ""

    def fetcher(self) -> Fetch:
        if self.moto is None:
            return self._fetch_local
        bucket = self._live_bucket()
        url = self.moto.url

        def fetch(name: str) -> tuple[bytes, str]:  # anonymous: the bucket policy is what allows it
            with urllib.request.urlopen(f"{url}/{bucket}/{name}", timeout=30) as resp:
                return bytes(resp.read()), bucket

        return fetch

    def _fetch_local(self, name: str) -> tuple[bytes, str]:
        with urllib.request.urlopen(self.serve_url + name, timeout=30) as resp:
            return bytes(resp.read()), str(resp.headers["X-Sitemaps-Generation"])

    def _live_bucket(self) -> str:
        """The bucket the Ingress rewrites to (what nginx would use), checked against its label and policy."""
        assert self.kube is not None and self.moto is not None
        ing: dict[str, Any] | None = self.kube.ingress("sitemaps", NAMESPACE)
        assert ing is not None
        target = ing["metadata"]["annotations"][REWRITE]
        m = re.fullmatch(r"/([a-z0-9.-]+)/\$2", target)
        assert m is not None, target
        bucket = m.group(1)
        assert ing["metadata"]["labels"]["bucket"] == bucket, (ing["metadata"]["labels"], target)
        (statement,) = json.loads(self.moto.client().get_bucket_policy(bucket))["Statement"]
        assert statement["Action"] == ["s3:GetObject"], statement
        return bucket

    def observe(self) -> Observation:
        """What is served, read whole; a read that straddled a switch is read again."""
        for _ in range(5):
            try:
                fetch = self.fetcher()
            except Exception as exc:  # the Ingress names no complete, public generation
                return Observation("?", None, f"router: {type(exc).__name__}: {exc}"[:500])
            with contextlib.suppress(Switched):
                return observe(fetch, BASE)
        raise AssertionError("the live generation changed under five reads in a row")

    def generations(self) -> set[str]:
        """Generations in the store, named as observations name them (S3: buckets)."""
        if self.moto is None:
            root = self.data_dir / "generations"
            return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()
        return {b.name for b in self.moto.client().list_buckets() if b.name.startswith(self.prefix + "-")}


def base_env(data_dir: Path, database_url: str) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(data_dir),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "50",
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'manifest.db'}"
    else:
        yield from fresh_pg_database()


@contextlib.contextmanager
def deployment(db: str, store: str, tmp: Path) -> Iterator[Deployment]:
    """A fresh deployment in `tmp`: its manifest, its store and whatever serves the live generation."""
    with database(db, tmp) as url:
        env = base_env(tmp / "data", url)
        if store == "local":
            yield from _local(f"{db}-{store}", env, tmp)
        else:
            yield from _s3(f"{db}-{store}", env, tmp)


def _local(name: str, env: dict[str, str], tmp: Path) -> Iterator[Deployment]:
    log = tmp / "serve.log"
    serve = ManagedProcess(
        [sys.executable, "-m", "sitemap_keeper", "serve", "--port", "0"], log, env={**os.environ, **env}
    )
    serve.start()
    try:
        found: list[str] = []

        def listening() -> bool:
            if not serve.running:
                raise RuntimeError(f"sitemaps serve exited: {serve.log_tail()}")
            found[:] = re.findall(r"at (http://127\.0\.0\.1:\d+/sitemaps/)", log.read_text())
            return bool(found)

        wait_for(listening, 60, interval=0.05, what="sitemaps serve")
        yield Deployment(name, env, tmp / "data", serve_url=found[0])
    finally:
        serve.stop()


def _s3(name: str, env: dict[str, str], tmp: Path) -> Iterator[Deployment]:
    moto, kube = MotoS3Server().start(), KubeAPIServer().start()
    prefix = unique_name("crash", 8)
    placeholder = f"{prefix}-{PLACEHOLDER}"
    kube.seed_ingress(
        "sitemaps",
        NAMESPACE,
        path="/sitemaps(/|$)(.*)",
        labels={"bucket": placeholder},
        annotations={"nginx.ingress.kubernetes.io/use-regex": "true", REWRITE: f"/{placeholder}/$2"},
    )
    env = {
        **env,
        "SITEMAPS_STORAGE": "s3",
        "SITEMAPS_S3_ENDPOINT": moto.endpoint,
        "SITEMAPS_S3_ACCESS_KEY": moto.access_key,
        "SITEMAPS_S3_SECRET_KEY": moto.secret_key,
        "SITEMAPS_S3_SECURE": "false",
        "SITEMAPS_S3_REGION": moto.region,
        "SITEMAPS_BUCKET_PREFIX": prefix,
        "SITEMAPS_ROUTER": "ingress",
        "SITEMAPS_KUBE_API": kube.url,
        "SITEMAPS_ROUTER_NAMESPACE": NAMESPACE,
        "SITEMAPS_INGRESS_NAME": "sitemaps",
    }
    d = Deployment(name, env, tmp / "data", moto=moto, kube=kube, prefix=prefix)
    try:
        yield d
    finally:
        for bucket in d.generations():
            moto.delete_bucket(bucket)
        kube.stop()
        moto.stop()
