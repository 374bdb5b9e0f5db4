"""Hostile operation: the tool run the way real teams run it, through the real CLI.

Two sites (staging and production) on one S3 server or one data directory, each pruning past the grace period;
a prune with the wrong manifest (a mistyped SITEMAPS_DATABASE_URL); a clock that stepped a day and a year ahead
and back (libfaketime). Every check reads the store, the router and the served files back independently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from sitemap_keeper.snapshot import generation
from tests.factories import HOST, TWO_SECTIONS, doc
from tests.service_helpers import ServiceProcess, service_env
from tests.services.faultproxy import FaultProxy
from tests.services.kube import KubeAPIServer
from tests.services.ports import wait_for
from tests.services.s3 import S3Server
from tests.support import Model, cli, read_site
from tests.test_s3_publish import World, make_world

BASE = "http://127.0.0.1:8080/sitemaps/"
STAMP = ".sitemaps-site"  # the object a generation's stamp is kept in (the site id of the manifest that made it)
needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="faketime (libfaketime) is not installed: apt-get install faketime"
)


def site_id(env: dict[str, str]) -> str:
    site: str = json.loads(cli("status", "--json", env=env).stdout)["site"]
    assert len(site) == 16, site
    return site


# -- a site on the local store and router, driven through the CLI ------------------------------------------------


@dataclass
class LocalSite:
    env: dict[str, str]
    tmp: Path
    model: Model = field(default_factory=Model)
    version: int = 1
    truths: dict[str, dict[str, str | None]] = field(default_factory=dict)  # generation -> what it holds

    @property
    def data(self) -> Path:
        return Path(self.env["SITEMAPS_DATA_DIR"])

    def live(self) -> str | None:
        link = self.data / "current"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def generations(self) -> list[str]:
        return sorted(p.name for p in (self.data / "generations").iterdir())

    def stamp(self, gen_id: str) -> str | None:
        path = self.data / "generations" / gen_id / STAMP
        return path.read_text().strip() if path.exists() else None

    def holds(self, gen_id: str) -> dict[str, str | None]:
        """The URLs of one generation, read from its files as a crawler would."""
        return read_site(lambda name: (self.data / "generations" / gen_id / name).read_bytes(), BASE).urls

    def rebuild(self, docs: int = 120) -> str:
        items = [doc(i, section=TWO_SECTIONS) for i in range(docs)]
        for d in items:
            self.model.event(d)
        source = self.tmp / "catalog.jsonl"
        source.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in items))
        cli("rebuild", "--source", str(source), env=self.env)
        return self.published()

    def apply(self, count: int = 2) -> None:
        self.version += 1
        events = [doc(i * 7 + self.version, self.version, TWO_SECTIONS, self.version % 28 + 1) for i in range(count)]
        for e in events:
            self.model.event(e)
        path = self.tmp / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        cli("apply", str(path), env=self.env)

    def publish(self, prefix: tuple[str, ...] = (), timeout: float = 120) -> float:
        """`sitemaps publish` (under `prefix`, e.g. faketime); returns the seconds it took."""
        started = time.monotonic()
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "sitemap_keeper", "publish"],
            env={**os.environ, **self.env, "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr
        self.published()
        return time.monotonic() - started

    def published(self) -> str:
        live = self.live()
        assert live is not None
        self.truths[live] = self.model.expected()
        assert self.holds(live) == self.truths[live]
        return live


def local_env(tmp: Path, database_url: str | None) -> dict[str, str]:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp / "data"),
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "50",
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    if database_url is not None:
        env["SITEMAPS_DATABASE_URL"] = database_url
    return env


@pytest.fixture
def site(tmp_path: Path) -> LocalSite:
    """One site on SQLite, three generations published (the first by a rebuild)."""
    (tmp_path / "a").mkdir()
    s = LocalSite(local_env(tmp_path, f"sqlite:///{tmp_path / 'a' / 'manifest.db'}"), tmp_path / "a")
    s.rebuild()
    for _ in range(2):
        s.apply()
        s.publish()
    return s


def refused_in_one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- 1. two sites on one store ----------------------------------------------------------------------------------


def test_two_sites_share_one_data_dir(site: LocalSite, tmp_path: Path, database_url: str) -> None:
    """Staging pointed at production's data dir by mistake: its rebuild takes the router over (as --full does
    on purpose), then its prune, past the grace period, must not delete production's generations: they are
    stamped with production's site id, and reported. Production's own prune refuses (the router serves a
    generation it never published); production rolls back to its own generation by name and prunes again."""
    a = site
    a_gens, a_site = a.generations(), site_id(a.env)
    assert [a.stamp(g) for g in a_gens] == [a_site] * 3
    (tmp_path / "b").mkdir()
    b = LocalSite({**a.env, "SITEMAPS_DATABASE_URL": database_url}, tmp_path / "b")
    b_first = b.rebuild(60)
    b_site = site_id(b.env)
    assert b_site != a_site and b.stamp(b_first) == b_site

    out = cli("prune", "--keep", "1", "--grace", "0", env=b.env).stdout
    assert "deleted 0; abandoned deleted 0" in out, out
    assert all(f"{g} (site {a_site})" in out for g in a_gens), out
    assert a.generations() == sorted([*a_gens, b_first])
    assert all(a.holds(g) == a.truths[g] for g in a_gens)

    refused_in_one_line(
        cli("prune", "--keep", "1", "--grace", "0", env=a.env, check=False),
        f"the router serves generation {b_first}, which this manifest never published",
    )
    refused_in_one_line(cli("rollback", env=a.env, check=False), "never published")
    cli("rollback", a_gens[-1], env=a.env)  # by name: on purpose
    assert a.live() == a_gens[-1]
    out = cli("prune", "--keep", "2", "--grace", "0", env=a.env).stdout
    assert "deleted 1;" in out and f"{b_first} (site {b_site})" in out, out
    assert a.generations() == sorted([*a_gens[1:], b_first])


def test_a_rebuild_keeps_the_site_id(tmp_path: Path, database_url: str) -> None:
    """The identity lives in the manifest beside the tables a rebuild replaces: after a rebuild the site still
    owns, and prunes, every generation it published before."""
    s = LocalSite(local_env(tmp_path, database_url), tmp_path)
    gens = [s.rebuild()]
    s.apply()
    s.publish()
    gens.append(s.live())
    site = site_id(s.env)
    s.model = Model()  # a rebuild replaces the site with its source
    gens.append(s.rebuild(150))
    assert site_id(s.env) == site and [s.stamp(g) for g in gens] == [site] * 3
    out = cli("prune", "--keep", "1", "--grace", "0", env=s.env).stdout
    assert "deleted 2; abandoned deleted 0" in out and "left alone" not in out, out
    assert s.generations() == gens[2:]


@dataclass
class TwoWorlds:
    a: World
    b: World
    server: S3Server

    def stamp(self, w: World, name: str) -> str | None:
        gen_id = w.gen(name)
        bucket, prefix = w.layout.bucket_of(gen_id), w.layout.key_prefix(gen_id)
        try:
            return self.server.get_bytes(bucket, prefix + STAMP).decode().strip()
        except Exception:
            return None

    def foreign_generation(self, w: World) -> str:
        """A generation neither manifest recorded, without a stamp (a tool of its own, an older version)."""
        gen_id = generation.new_id(now=1_000_000_000)
        if w.one_bucket:
            self.server.put_bytes(w.one_bucket, f"generations/{gen_id}/sitemap.xml", b"theirs")
        else:
            self.server.client().make_bucket(w.layout.name(gen_id))
            self.server.put_bytes(w.layout.name(gen_id), "sitemap.xml", b"theirs")
        return w.layout.name(gen_id)


@pytest.fixture(params=["buckets", "prefix"])
def two_worlds(
    request: pytest.FixtureRequest,
    s3_server: S3Server,
    kube_api: KubeAPIServer,
    s3_fault_proxy: FaultProxy,
    s3_bucket_prefix: str,
    tmp_path: Path,
) -> Iterator[TwoWorlds]:
    """Two sites, each with its own manifest and Ingress, on one S3 server with one bucket prefix (or one
    prefix-layout bucket), as staging and production with the default settings."""
    other_kube = KubeAPIServer().start()
    made: list[tuple[Iterator[World], World]] = []
    try:
        for name, kube in (("a", kube_api), ("b", other_kube)):
            (tmp_path / name).mkdir()
            world = make_world(
                s3_server,
                kube,
                s3_fault_proxy,
                s3_bucket_prefix,
                tmp_path / name,
                f"sqlite:///{tmp_path / name / 'manifest.db'}",
                request.param == "prefix",
            )
            made.append((world, next(world)))
        yield TwoWorlds(made[0][1], made[1][1], s3_server)
    finally:
        for world, _w in made:
            for _ in world:  # its clean-up: the buckets of the prefix
                pass
        other_kube.stop()


def test_two_sites_share_one_s3_server(two_worlds: TwoWorlds) -> None:
    """Site B's prune, past the grace period, leaves site A's generations (its live one included) alone and
    reports them, and A's prune leaves B's; an unstamped generation neither recorded is reported by both."""
    t, a, b = two_worlds, two_worlds.a, two_worlds.b
    a.rebuild(via_cli=True)
    a_names, truths = [a.serving()], {}
    for _ in range(2):
        truths[a_names[-1]] = a.model.expected()
        a.apply(2)
        cli("publish", env=a.env)
        a_names.append(a.serving())
    b.rebuild(via_cli=True)
    b.apply(1)
    cli("publish", env=b.env)
    b_live = b.serving()
    a_site, b_site = site_id(a.env), site_id(b.env)
    assert {t.stamp(a, n) for n in a_names} == {a_site} and t.stamp(b, b_live) == b_site
    theirs = t.foreign_generation(a)

    out = cli("prune", "--keep", "1", "--grace", "0", env=b.env).stdout
    assert "deleted 1; abandoned deleted 0" in out, out
    assert all(f"{a.gen(n)} (site {a_site})" in out for n in a_names), out
    assert f"{a.gen(theirs)} (unstamped)" in out, out
    assert a.serving() == a_names[-1] and b.serving() == b_live
    assert set(a_names) | {theirs} <= set(a.buckets())

    out = cli("prune", "--keep", "2", "--grace", "0", env=a.env).stdout
    assert "deleted 1; abandoned deleted 0" in out, out
    assert f"{b.gen(b_live)} (site {b_site})" in out and f"{a.gen(theirs)} (unstamped)" in out, out
    assert a.buckets() == sorted([*a_names[1:], b_live, theirs])
    cli("rollback", env=a.env)
    assert a.serving(truth=truths[a_names[1]]) == a_names[1] and b.serving() == b_live


@pytest.fixture(params=["buckets", "prefix"])
def s3_site(
    request: pytest.FixtureRequest,
    s3_server: S3Server,
    kube_api: KubeAPIServer,
    s3_fault_proxy: FaultProxy,
    s3_bucket_prefix: str,
    tmp_path: Path,
) -> Iterator[World]:
    """One site on S3 (moto, rclone) in either layout, behind an Ingress."""
    yield from make_world(
        s3_server,
        kube_api,
        s3_fault_proxy,
        s3_bucket_prefix,
        tmp_path,
        f"sqlite:///{tmp_path / 'manifest.db'}",
        request.param == "prefix",
    )


def test_a_store_from_before_stamps_is_adopted(s3_site: World) -> None:
    """Generations published before stamps existed: those the manifest recorded are stamped when prune or
    rollback meets them (and pruned as before); one it never recorded stays, unstamped, and is reported."""
    w = s3_site
    w.rebuild(via_cli=True)
    names, truths = [w.serving()], {w.serving(): w.model.expected()}
    for _ in range(3):
        w.apply(1)
        cli("publish", env=w.env)
        names.append(w.serving())
        truths[names[-1]] = w.model.expected()
    for n in names:  # as the version before stamps left them
        gen_id = w.gen(n)
        w.server.client().remove_object(w.layout.bucket_of(gen_id), w.layout.key_prefix(gen_id) + STAMP)
    two = TwoWorlds(w, w, w.server)
    assert {two.stamp(w, n) for n in names} == {None}
    theirs = two.foreign_generation(w)
    site = site_id(w.env)

    out = cli("prune", "--keep", "3", "--grace", "0", env=w.env).stdout
    assert "deleted 1; abandoned deleted 0" in out and f"{w.gen(theirs)} (unstamped)" in out, out
    assert w.buckets() == sorted([*names[1:], theirs])
    assert [two.stamp(w, n) for n in names[1:]] == [site] * 3 and two.stamp(w, theirs) is None
    cli("rollback", w.gen(names[1]), env=w.env)
    assert w.serving(truth=truths[names[1]]) == names[1]


# -- 2. prune with the wrong manifest ---------------------------------------------------------------------------


def test_prune_with_a_manifest_that_never_published_the_live_generation(site: LocalSite, database_url: str) -> None:
    """A mistyped SITEMAPS_DATABASE_URL (a new, empty manifest) makes prune refuse in one line, deleting
    nothing; rollback with the right manifest still has its targets."""
    gens = site.generations()
    wrong = {**site.env, "SITEMAPS_DATABASE_URL": database_url}
    refused_in_one_line(
        cli("prune", "--keep", "1", "--grace", "0", env=wrong, check=False),
        f"the router serves generation {gens[-1]}, which this manifest never published",
    )
    assert site.generations() == gens
    cli("rollback", env=site.env)
    assert site.live() == gens[-2] and site.holds(gens[-2]) == site.truths[gens[-2]]


def test_prune_with_the_wrong_manifest_on_s3(s3_site: World, tmp_path: Path) -> None:
    w = s3_site
    w.rebuild(via_cli=True)
    names, first = [w.serving()], w.model.expected()
    w.apply(1)
    cli("publish", env=w.env)
    names.append(w.serving())
    wrong = {**w.env, "SITEMAPS_DATABASE_URL": f"sqlite:///{tmp_path / 'typo.db'}"}
    refused_in_one_line(
        cli("prune", "--keep", "1", "--grace", "0", env=wrong, check=False),
        f"the router serves generation {w.gen(names[-1])}, which this manifest never published",
    )
    assert w.buckets() == names
    cli("rollback", env=w.env)
    assert w.serving(truth=first) == names[0]


def test_the_prune_timer_with_the_wrong_manifest(site: LocalSite, tmp_path: Path) -> None:
    """`sitemaps run`'s prune timer refuses the same way: one error line a turn, no traceback, nothing deleted."""
    gens = site.generations()
    events = tmp_path / "nothing.jsonl"
    events.write_bytes(b"")
    env = {
        **service_env(
            tmp_path, f"sqlite:///{tmp_path / 'typo.db'}", SITEMAPS_PRUNE_INTERVAL="1", SITEMAPS_PUBLISH_INTERVAL="600"
        ),
        "SITEMAPS_DATA_DIR": site.env["SITEMAPS_DATA_DIR"],
    }
    log = tmp_path / "service.log"
    svc = ServiceProcess(["run", "--follow", str(events)], env, log)
    try:
        wait_for(
            lambda: log.read_text().count("not pruning: the router serves generation") >= 2, 30, "two refused prunes"
        )
    finally:
        svc.stop()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert site.generations() == gens


# -- 3. a clock that steps back ---------------------------------------------------------------------------------


def test_new_ids_after_a_clock_a_year_ahead_come_at_once() -> None:
    ahead = generation.new_id(now=time.time() + 365 * 86400)
    started = time.perf_counter()
    ids = [ahead]
    for _ in range(1000):
        ids.append(generation.new_id(after=ids[-1]))
    assert time.perf_counter() - started < 1.0
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert round((generation.created_at(ids[1]) - generation.created_at(ahead)) * 1000) == 1  # ms, exactly


@needs_faketime
def test_a_clock_that_steps_back(tmp_path: Path, database_url: str) -> None:
    """Publish with the clock a day ahead, correct it, publish; then a year ahead and back. Each publish after
    the correction takes as long as any other (it spun for minutes), its id sorts after the one before, and
    status, prune's newest N and rollback's "previous" follow publish order."""
    s = LocalSite(local_env(tmp_path, database_url), tmp_path)
    order = [s.rebuild()]
    seconds = []
    for ahead in ("+1d", "+365d"):
        s.apply()
        s.publish(("faketime", "-f", ahead))
        order.append(s.live())
        s.apply()
        seconds.append(s.publish(timeout=60))
        order.append(s.live())
    assert order == sorted(order) and len(set(order)) == 5
    assert generation.created_at(order[3]) - time.time() > 300 * 86400  # the year-ahead id
    assert max(seconds) < 30, seconds
    info = json.loads(cli("status", "--json", env=s.env).stdout)
    assert info["live_generation"] == order[-1] and info["retained_generations"] == order[::-1]
    out = cli("prune", "--keep", "3", "--grace", "0", env=s.env).stdout
    assert f"kept 3 ({', '.join(order[:1:-1])})" in out, out
    assert s.generations() == order[2:]
    cli("rollback", env=s.env)
    assert s.live() == order[3] and s.holds(order[3]) == s.truths[order[3]]
