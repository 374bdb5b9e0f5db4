"""Publishing to S3 behind a Kubernetes Ingress, end to end: the real CLI, real S3 servers (moto and
`rclone serve s3`), the Kubernetes API stand-in, faults between the steps, and a kill -9 at each step.

Every check reads back independently of the product: the Ingress through kubectl (or the stand-in's own
state), the bucket it names through the S3 API or anonymous HTTP, every file parsed and schema-validated.
"""

from __future__ import annotations

import json
import shutil
import signal
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot import generation
from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.prune import prune
from sitemap_keeper.snapshot.publish import STEPS
from sitemap_keeper.snapshot.rebuild import Rebuilder, row_chunks
from sitemap_keeper.snapshot.routers.base import RouterError
from sitemap_keeper.snapshot.routers.ingress import IngressRouter
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores.base import StoreError
from sitemap_keeper.snapshot.stores.s3 import S3Store
from sitemap_keeper.snapshot.verify import verify_generation
from tests.conftest import fresh_pg_database
from tests.factories import HOST, TWO_SECTIONS, doc
from tests.services.faultproxy import FaultProxy
from tests.services.kube import KubeAPIServer
from tests.services.s3 import MotoS3Server, S3Server
from tests.support import Model, cli, read_site, validate

BASE = "http://127.0.0.1:8080/sitemaps/"
NS = "web"
NGINX = "nginx.ingress.kubernetes.io/rewrite-target"
PLACEHOLDER = "19700101-000000-000-0000"  # what deploy/ingress.yaml ships with
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@dataclass
class World:
    """One deployment: an S3 server (reached through a fault proxy), an Ingress, a manifest, the truth."""

    server: S3Server
    kube: KubeAPIServer
    proxy: FaultProxy
    prefix: str
    database_url: str
    tmp: Path
    model: Model = field(default_factory=Model)
    version: int = 1
    one_bucket: str | None = None  # the prefix layout: every generation in this bucket

    @property
    def layout(self) -> Layout:
        return Layout(self.prefix, self.one_bucket)

    @property
    def template(self) -> str:
        return "{path}/$2" if self.one_bucket else "/{bucket}/$2"

    @property
    def public(self) -> bool:
        return self.server.supports_bucket_policy

    @property
    def env(self) -> dict[str, str]:
        return {
            "SITEMAPS_DATA_DIR": str(self.tmp / "data"),
            "SITEMAPS_DATABASE_URL": self.database_url,
            "SITEMAPS_BASE_URL": BASE,
            "SITEMAPS_ALLOWED_HOSTS": HOST,
            "SITEMAPS_MAX_URLS": "50",
            "SITEMAPS_LOG_LEVEL": "WARNING",
            "SITEMAPS_STORAGE": "s3",
            "SITEMAPS_S3_ENDPOINT": self.proxy.endpoint,
            "SITEMAPS_S3_ACCESS_KEY": self.server.access_key,
            "SITEMAPS_S3_SECRET_KEY": self.server.secret_key,
            "SITEMAPS_S3_SECURE": "false",
            "SITEMAPS_S3_REGION": self.server.region,
            "SITEMAPS_BUCKET_PREFIX": self.prefix,
            "SITEMAPS_S3_PUBLIC_READ": str(self.public).lower(),  # rclone has no bucket policies
            "SITEMAPS_ROUTER": "ingress",
            "SITEMAPS_KUBE_API": self.kube.url,
            "SITEMAPS_ROUTER_NAMESPACE": NS,
            "SITEMAPS_INGRESS_NAME": "sitemaps",
            "SITEMAPS_S3_LAYOUT": "prefix" if self.one_bucket else "buckets",
            "SITEMAPS_S3_BUCKET": self.one_bucket or "",
            "SITEMAPS_INGRESS_ANNOTATION_VALUE": self.template,
        }

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.tmp / "data",
            database_url=self.database_url,
            base_url=BASE,
            allowed_hosts=(HOST,),
            max_urls=50,
            storage="s3",
            s3_endpoint=self.proxy.endpoint,
            s3_access_key=self.server.access_key,
            s3_secret_key=self.server.secret_key,
            s3_secure=False,
            s3_region=self.server.region,
            bucket_prefix=self.prefix,
            s3_public_read=self.public,
            router="ingress",
            kube_api=self.kube.url,
            router_namespace=NS,
            s3_layout="prefix" if self.one_bucket else "buckets",
            s3_bucket=self.one_bucket,
            ingress_annotation_value=self.template,
        )

    def app(self) -> App:
        """In-process, with quick retries so that persistent faults fail fast."""
        app = App(self.settings())
        app.__dict__["store"] = S3Store.from_settings(app.settings, backoff=Backoff(4, 0.01, 0.05))
        app.__dict__["router"] = IngressRouter(
            self.kube.api_client(),
            NS,
            "sitemaps",
            self.layout,
            annotation_value=self.template,
            backoff=Backoff(4, 0.01, 0.05),
        )
        return app

    def apply(self, count: int = 1) -> None:
        """Change `count` documents, in the product's manifest and in the truth."""
        self.version += 1
        events = [doc(i * 17 + self.version, self.version, TWO_SECTIONS, self.version % 28 + 1) for i in range(count)]
        for e in events:
            self.model.event(e)
        app = App(self.settings())
        try:
            app.applier.apply_raw([(f"t:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
        finally:
            app.close()

    # -- the independent reader --------------------------------------------------------------------------

    def ingress(self, kubectl: bool = False) -> dict[str, Any]:
        if kubectl:
            out = self.kube.kubectl("get", "ingress", "sitemaps", "-n", NS, "-o", "json").stdout
            obj: dict[str, Any] = json.loads(out)
            return obj
        found = self.kube.ingress("sitemaps", NS)
        assert found is not None
        return found

    def fetch(self, bucket: str, prefix: str) -> Callable[[str], bytes]:
        def anonymous(name: str) -> bytes:  # public read: no credentials at all
            with urllib.request.urlopen(f"{self.server.url}/{bucket}/{prefix}{name}", timeout=30) as resp:
                return bytes(resp.read())

        return anonymous if self.public else (lambda name: self.server.get_bytes(bucket, prefix + name))

    def serving(self, kubectl: bool = False, truth: dict[str, str | None] | None = None) -> str:
        """The Ingress points at a complete, valid (and, where the server can, public) generation holding
        exactly the truth (default: everything applied); returns its name (label), `<prefix>-<id>`."""
        ing = self.ingress(kubectl)
        name: str = ing["metadata"]["labels"]["bucket"]
        gen_id = self.gen(name)
        bucket, prefix = self.layout.bucket_of(gen_id), self.layout.key_prefix(gen_id)
        target = f"/{bucket}/{prefix}$2".replace("//", "/")
        assert ing["metadata"]["annotations"][NGINX] == target
        fetch = self.fetch(bucket, prefix)
        site = read_site(fetch, BASE)
        assert site.urls == (self.model.expected() if truth is None else truth)
        keys = {k[len(prefix) :] for k in self.server.list_keys(bucket, prefix or None)}
        assert self.server.get_bytes(bucket, prefix + ".sitemaps-site")  # the stamp: whose generation it is
        keys.discard(".sitemaps-site")
        assert set(site.files) <= keys
        for extra in keys - set(site.files):  # the section indexes, listing the same shards
            index = validate(extra, fetch(extra))
            locs = {e.text for e in index.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")}
            assert extra.startswith("sitemap-") and locs
            assert {loc[len(BASE) :] for loc in locs} <= set(site.files)
        if self.public:
            (statement,) = json.loads(self.server.client().get_bucket_policy(bucket))["Statement"]
            objects = "generations/*" if self.one_bucket else "*"
            assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
                "Allow",
                ["s3:GetObject"],
                [f"arn:aws:s3:::{bucket}/{objects}"],
            )
        return name

    def buckets(self) -> list[str]:
        """The generations in S3 by name, `<prefix>-<id>` (in the buckets layout, their buckets)."""
        if self.one_bucket:
            dirs = self.server.client().list_objects(self.one_bucket, prefix="generations/")
            return sorted(f"{self.prefix}-{str(d.object_name).split('/')[1]}" for d in dirs)
        names = (b.name for b in self.server.client().list_buckets())
        return sorted(n for n in names if n.startswith(self.prefix + "-"))

    def gen(self, name: str) -> str:
        gen_id = self.layout.generation(name)
        assert gen_id is not None, name
        return gen_id

    def rebuild(self, via_cli: bool = False) -> None:
        """The first generation: 300 documents in two sections, 6 shards."""
        docs = [doc(i, section=TWO_SECTIONS) for i in range(300)]
        for d in docs:
            self.model.event(d)
        if via_cli:
            source = self.tmp / "catalog.jsonl"
            source.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
            cli("rebuild", "--source", str(source), env=self.env)
            return
        app = self.app()
        try:
            Rebuilder(app.manifest, app.settings.rules, app.settings.limits, 1).rebuild(row_chunks("src", docs))
            app.publisher.publish(full=True)
        finally:
            app.close()


def make_world(
    server: S3Server,
    kube: KubeAPIServer,
    proxy: FaultProxy,
    prefix: str,
    tmp: Path,
    database_url: str,
    one_bucket: bool = False,
) -> Iterator[World]:
    name = f"{prefix.rstrip('-')}-{PLACEHOLDER}"  # as deploy/ingress.yaml ships it
    kube.seed_ingress(
        "sitemaps",
        NS,
        path="/sitemaps(/|$)(.*)",
        labels={"bucket": name},
        annotations={"nginx.ingress.kubernetes.io/use-regex": "true", NGINX: f"/{name}/$2"},
    )
    w = World(
        server, kube, proxy, prefix.rstrip("-"), database_url, tmp, one_bucket=prefix + "all" if one_bucket else None
    )
    yield w
    for bucket in [w.one_bucket] if w.one_bucket else w.buckets():
        server.delete_bucket(bucket)


@pytest.fixture
def world(
    s3_server: S3Server, kube_api: KubeAPIServer, s3_fault_proxy: FaultProxy, s3_bucket_prefix: str, tmp_path: Path
) -> Iterator[World]:
    yield from make_world(
        s3_server, kube_api, s3_fault_proxy, s3_bucket_prefix, tmp_path, f"sqlite:///{tmp_path / 'manifest.db'}"
    )


@pytest.fixture
def moto_world(
    moto_s3: MotoS3Server,
    kube_api: KubeAPIServer,
    fault_proxy_factory: Callable[[str], FaultProxy],
    s3_bucket_prefix: str,
    tmp_path: Path,
) -> Iterator[World]:
    yield from make_world(
        moto_s3,
        kube_api,
        fault_proxy_factory(moto_s3.endpoint),
        s3_bucket_prefix,
        tmp_path,
        f"sqlite:///{tmp_path / 'manifest.db'}",
    )


@pytest.fixture
def pg_world(
    moto_s3: MotoS3Server,
    kube_api: KubeAPIServer,
    fault_proxy_factory: Callable[[str], FaultProxy],
    s3_bucket_prefix: str,
    tmp_path: Path,
) -> Iterator[World]:
    for url in fresh_pg_database():
        yield from make_world(moto_s3, kube_api, fault_proxy_factory(moto_s3.endpoint), s3_bucket_prefix, tmp_path, url)


def test_prefix_layout(
    s3_server: S3Server, kube_api: KubeAPIServer, s3_fault_proxy: FaultProxy, s3_bucket_prefix: str, tmp_path: Path
) -> None:
    """One bucket, generations under generations/<id>/, the Ingress rewriting to `{path}/$2`: the same
    guarantees."""
    for w in make_world(
        s3_server,
        kube_api,
        s3_fault_proxy,
        s3_bucket_prefix,
        tmp_path,
        f"sqlite:///{tmp_path / 'manifest.db'}",
        one_bucket=True,
    ):
        w.rebuild()
        first = w.serving()
        app = w.app()
        try:
            w.apply(1)
            result = app.publisher.publish()
            assert (result.rendered, result.copied) == (1, 5)
            second = w.serving()
            w.apply(1)
            app.publisher.publish()
            live = w.serving()
            assert w.buckets() == [first, second, live]
            prune(app.manifest, app.store, app.router, keep=2, grace=0)
            assert w.buckets() == [second, live]
        finally:
            app.close()


@needs_kubectl
def test_end_to_end(world: World) -> None:
    w = world
    w.rebuild(via_cli=True)
    first = w.serving(kubectl=True)
    assert w.buckets() == [first]

    # one change: exactly one shard uploaded, every other file copied server-side
    w.proxy.reset_stats()
    w.apply(1)
    out = cli("publish", env=w.env).stdout
    assert " 1 shards rendered, 5 copied" in out, out
    second = w.serving(kubectl=True)
    assert second != first and w.buckets() == [first, second]
    requests = [(r.method, r.target) for r in w.proxy.log]
    puts = sorted(t.split("/")[2] for m, t in requests if m == "PUT" and t.startswith(f"/{second}/"))
    shards = [n for n in puts if n.endswith(".xml.gz")]
    assert len(shards) == 6 and set(puts) == set(w.server.list_keys(second))
    old = {o.object_name: o.etag for o in w.server.client().list_objects(first)}
    new = {o.object_name: o.etag for o in w.server.client().list_objects(second)}
    (uploaded,) = [n for n in shards if old[n] != new[n]]  # the rest are byte-identical copies
    # No copied file's bytes went through this process (only the changed shard is read, after the
    # switch, by the diff recorder; and the new generation's stamp, that it is no other site's, before it).
    reads = {t.split("/")[2] for m, t in requests if m == "GET" and "?" not in t}
    assert reads <= {uploaded, ".sitemaps-site"}, reads
    content_types = {w.server.client().stat_object(second, n).content_type for n in new if n != ".sitemaps-site"}
    assert content_types == {"application/gzip", "application/xml"}

    status = cli("status", "--json", env=w.env)
    info = json.loads(status.stdout)
    assert info["live_generation"] == w.gen(second)
    assert info["store"] == f"s3:http://{w.proxy.endpoint}/{w.prefix}-<generation>"
    assert info["router"].startswith(f"ingress:{NS}/sitemaps")
    assert w.server.secret_key not in status.stdout + status.stderr

    # a half-built generation of a killed publish, then a third generation; buckets no manifest recorded (another
    # site's, another tool's); prune keeps two, the live one included, deletes the half-built one (a publish
    # began after it) and leaves the others alone, saying so
    truths = {second: w.model.expected()}
    w.apply(3)
    before = set(w.buckets())
    assert cli("publish", env={**w.env, "SITEMAPS_KILL_AT": "copy"}, check=False).returncode == -signal.SIGKILL
    (half,) = set(w.buckets()) - before
    cli("publish", env=w.env)
    live = w.serving(kubectl=True)
    truths[live] = w.model.expected()
    stale = f"{w.prefix}-{generation.new_id(now=1_000_000_000)}"  # of 2001, never recorded here
    w.server.client().make_bucket(stale)
    w.server.put_bytes(stale, "sitemap.xml", b"half")
    young = f"{w.prefix}-{generation.new_id()}"
    w.server.client().make_bucket(young)
    out = cli("prune", "--keep", "2", env=w.env).stdout
    assert "deleted 1; abandoned deleted 1; left alone 2 not this site's: " in out, out
    assert f"{w.gen(stale)} (unstamped)" in out and f"{w.gen(young)} (unstamped)" in out, out
    assert half not in w.buckets() and w.buckets() == sorted([second, live, stale, young])
    assert w.serving() == live

    # rollback to the retained one, then publish the manifest's state on top of it again
    cli("rollback", env=w.env)
    assert w.serving(kubectl=True, truth=truths[second]) == second
    cli("resume", env=w.env)  # the rollback held the site there
    cli("publish", env=w.env)
    assert w.serving(kubectl=True) not in (second, live)


def test_faults_between_steps(world: World) -> None:
    """A persistent failure at any step fails the publish and leaves the live generation serving; a
    transient one is retried; either way the next publish succeeds."""
    w = world
    w.rebuild()
    steps: list[tuple[str, dict[str, Any]]] = [
        ("create", {"method": "PUT", "path": rf"^/{w.prefix}-[0-9a-f-]+$"}),
        ("render", {"method": "PUT", "path": r"\.xml\.gz$"}),  # the upload comes before the copies
        ("copy", {"method": "PUT", "path": r"\.xml\.gz$", "after": 1}),
        ("indexes", {"method": "PUT", "path": r"/sitemap[^/]*\.xml$"}),
        ("verify", {"method": "GET", "path": r"list-type=2"}),
        ("policy", {"method": "PUT", "path": r"\?policy"}),
    ]
    app = w.app()
    try:
        for step, where in steps:
            if step == "policy" and not w.public:
                continue
            live = w.serving()
            w.apply(1)
            w.proxy.add_rule("error", status=503, **where)
            with pytest.raises(StoreError, match="SlowDown"):
                app.publisher.publish()
            w.proxy.clear()
            assert w.ingress()["metadata"]["labels"]["bucket"] == live, step
            w.proxy.add_rule("reset", times=2, **where)
            w.proxy.add_rule("error", status=500, times=1, **where)
            result = app.publisher.publish()
            assert w.proxy.faults_injected >= 3, step
            w.proxy.clear()
            w.proxy.reset_stats()
            assert result.rendered == 1 and w.gen(w.serving()) == result.generation, step
    finally:
        app.close()


def test_router_conflicts_and_rbac(moto_world: World) -> None:
    w = moto_world
    w.rebuild()
    app = w.app()
    try:
        w.apply(1)
        w.kube.fail_next(409, method="PATCH", times=3)  # a storm it rides out
        result = app.publisher.publish()
        live, truth = w.serving(), w.model.expected()
        assert w.gen(live) == result.generation
        w.apply(1)
        w.kube.fail_next(409, method="PATCH", times=4)  # one it does not (4 attempts, see World.app)
        with pytest.raises(RouterError, match="409 Conflict"):
            app.publisher.publish()
        assert w.serving(truth=truth) == live
        w.kube.forbid("patch", "ingresses")
        with pytest.raises(RouterError, match="forbidden to patch"):
            app.publisher.publish()
        assert w.serving(truth=truth) == live
        w.kube.forbid("get", "ingresses")
        buckets = w.buckets()
        proc = cli("prune", "--keep", "1", "--grace", "0", env=w.env, check=False)
        assert proc.returncode == 1 and "forbidden to get" in proc.stderr
        assert "verbs get and patch" in proc.stderr
        assert w.buckets() == buckets  # nothing pruned
        w.kube.allow()
        ingress = w.ingress()
        w.kube.delete("networking.k8s.io/v1", "Ingress", NS, "sitemaps")
        proc = cli("publish", env=w.env, check=False)
        assert proc.returncode == 1 and 'Ingress "sitemaps" in namespace "web" not found' in proc.stderr
        w.kube.seed(ingress)
        result = app.publisher.publish()
        assert w.gen(w.serving()) == result.generation
    finally:
        app.close()


@needs_kubectl
def test_kill_9_at_every_step(pg_world: World) -> None:
    """After a kill -9 anywhere in publish, the Ingress points at a complete, valid, public generation,
    and the next publish succeeds. On PostgreSQL, the production manifest."""
    w = pg_world
    w.rebuild()
    app = w.app()
    try:
        for step in STEPS:
            before, truth = w.serving(), w.model.expected()
            w.apply(2)
            proc = cli("publish", env={**w.env, "SITEMAPS_KILL_AT": step}, check=False)
            assert proc.returncode == -signal.SIGKILL, (step, proc.stderr)
            if step == "switched":  # the router was switched: the new generation is live and complete
                assert w.serving(kubectl=True) != before
            else:
                assert w.serving(kubectl=True, truth=truth) == before, step
            assert app.publisher.publish().generation is not None or step == "switched", step
            assert w.serving() != before, step
        live = w.gen(w.serving())
        verify_generation(app.store, live, app.manifest.generations.files(live), app.settings.limits, deep=True)
        prune(app.manifest, app.store, app.router, keep=1, grace=0)  # every crash's leftovers
        assert w.buckets() == [w.serving()]
    finally:
        app.close()
