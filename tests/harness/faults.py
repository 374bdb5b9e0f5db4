"""The fault harness: publishes and prunes by the real CLI while S3 (through a fault proxy) and the Kubernetes
API (the stand-in) fail at a chosen rate, and the change-feed service losing its broker mid-stream.

After every publish and prune, failed or not, what is served is read back around the faults: the Ingress from
the stand-in's own state, the generation it names from the S3 server itself (anonymously where the server has
bucket policies), every file schema-validated and compared URL for URL, lastmod included, with the ground
truth. It must hold the model the live generation held before, or the new one: never anything else, never
missing. Once the faults stop, a publish must succeed and serve the new model, and a prune must leave exactly
the live generation.

    .venv/bin/python -m tests.harness.faults --seed 1 [--full]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from minio.error import InvalidResponseError, S3Error

from sitemap_keeper.incremental.app import App
from sitemap_keeper.snapshot.manifest import Manifest
from tests.factories import TWO_SECTIONS, doc
from tests.services.faultproxy import FaultAction, FaultProxy
from tests.services.kube import KubeAPIServer, Response, status_object
from tests.services.ports import unique_name
from tests.services.s3 import MotoS3Server, RcloneS3Server, S3Server
from tests.support import cli
from tests.test_s3_publish import World, make_world

TIMEOUT = 300.0  # a command still running after this long counts as hung


@dataclass(frozen=True)
class S3Fault:
    action: FaultAction
    status: int = 503
    seconds: float | None = None
    times: int | None = None  # at most this many per command


S3_KINDS: dict[str, tuple[S3Fault, ...]] = {
    "none": (),
    "500 InternalError": (S3Fault("error", 500),),
    "503 SlowDown": (S3Fault("error", 503),),
    "slow (0.5 s)": (S3Fault("delay", seconds=0.5),),
    "reset": (S3Fault("reset"),),
    "reset after the write": (S3Fault("reset_after_upstream"),),
    "truncated body": (S3Fault("truncate"),),
    "no answer (2 s, closed)": (S3Fault("hang", seconds=2.0),),
}
S3_KINDS["mixed"] = tuple(f for faults in list(S3_KINDS.values()) for f in faults)
# Past the client's 60 s read timeout: slow, so at most one a command, and in the full run only.
READ_TIMEOUT = "read timeout (70 s hang)"
S3_KINDS[READ_TIMEOUT] = (S3Fault("hang", seconds=70.0, times=1),)


@dataclass(frozen=True)
class KubeFault:
    method: str | None  # None: GET and PATCH
    status: int
    after_write: bool = False  # the PATCH is applied, then reported as failed

    def applies(self, method: str) -> bool:
        return self.method in (None, method)


KUBE_KINDS: dict[str, tuple[KubeFault, ...]] = {
    "409 on PATCH": (KubeFault("PATCH", 409),),
    "500": (KubeFault(None, 500),),
    "500 after the PATCH": (KubeFault("PATCH", 500, after_write=True),),
    "403": (KubeFault(None, 403),),
}
KUBE_KINDS["mixed"] = tuple(f for faults in list(KUBE_KINDS.values()) for f in faults)

Scenario = tuple[str, str, float]  # target ("s3" or "kube"), kind, rate of requests failing
SMALL: list[Scenario] = [("s3", "mixed", 0.2), ("s3", "mixed", 0.5), ("kube", "mixed", 0.3)]
RATES = (0.05, 0.2, 0.5)


def full_scenarios() -> list[Scenario]:
    s3 = [("s3", k, r) for k in S3_KINDS if k not in ("none", READ_TIMEOUT) for r in RATES]
    kube = [("kube", k, r) for k in KUBE_KINDS for r in RATES]
    return [("s3", "none", 0.0), *s3, ("s3", READ_TIMEOUT, 0.05), *kube]


class FlakyKube(KubeAPIServer):
    """The stand-in failing a share of the requests for the Ingress, with the API server's Status bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: tuple[KubeFault, ...] = ()
        self.rate = 0.0
        self.rng = random.Random()
        self.injected = 0

    def inject(self, faults: tuple[KubeFault, ...], rate: float, seed: int) -> None:
        with self._lock:
            self.faults, self.rate, self.rng = faults, rate, random.Random(seed)

    def _pick(self, method: str, path: str) -> KubeFault | None:
        with self._lock:
            candidates = [f for f in self.faults if f.applies(method)]
            if "/ingresses/" not in path or not candidates or self.rng.random() >= self.rate:
                return None
            self.injected += 1
            return self.rng.choice(candidates)

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        fault = self._pick(method, raw_path)
        if fault is None or fault.after_write:
            resp = super().handle(method, raw_path, headers, body)
            if fault is None:
                return resp
        assert fault is not None
        return Response(fault.status, status_object(fault.status, f"injected {fault.status}"))


def install(proxy: FaultProxy, faults: tuple[S3Fault, ...], rate: float, seed: int) -> None:
    """Each request fails with probability `rate`, the action chosen evenly among `faults`."""
    share = rate / len(faults) if faults else 0.0
    for i, f in enumerate(faults):
        # Rules are tried in order, the first firing wins: rule i only sees what the ones before let through.
        proxy.add_rule(
            f.action, status=f.status, seconds=f.seconds, times=f.times, rate=share / (1 - i * share), seed=seed + i
        )


@dataclass
class Row:
    target: str
    kind: str
    rate: str
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    injected: int = 0
    prunes_ok: int = 0
    prunes_failed: int = 0
    broken: int = 0
    deleted: int = 0
    unclear: int = 0  # failures without a one-line `error:` (a traceback, a signal, a hang)
    recovered: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.broken or self.deleted or self.unclear) and self.recovered


class Harness:
    """One deployment (S3 behind the fault proxy, the Ingress on the flaky stand-in) and its scenarios in turn."""

    def __init__(self, world: World, kube: FlakyKube, seed: int, publishes: int, label: str) -> None:
        self.w = world
        self.kube = kube
        self.seed = seed
        self.publishes = publishes
        self.label = label
        self.rng = random.Random(seed)
        world.rebuild(via_cli=True)
        self.truth = world.model.expected()  # what the live generation holds

    def scenario(self, target: str, kind: str, rate: float) -> Row:
        row = Row(self.label if target == "s3" else "Kubernetes API", kind, f"{rate:.0%}")
        started = time.monotonic()
        for n in range(self.publishes):
            self.change()
            with self.faults(row, target, kind, rate, n):
                proc = self.command(row, "publish")
            row.attempted += 1
            ok = proc is not None and proc.returncode == 0
            row.succeeded += ok
            row.failed += not ok
            self.check(row, f"publish {n + 1}", proc)
        self.change()
        proc = self.command(row, "publish")  # the faults have stopped
        row.recovered = self.check(row, "recovery publish", proc) and self.truth == self.w.model.expected()
        with self.faults(row, target, kind, rate, self.publishes):
            proc = self.command(row, "prune", "--keep", "2", "--grace", "0")
        row.prunes_ok += proc is not None and proc.returncode == 0
        row.prunes_failed += proc is None or proc.returncode != 0
        self.check(row, "prune", proc, published=False)
        row.seconds = time.monotonic() - started
        return row

    def finish(self, row: Row) -> None:
        """Without faults, a prune keeping one leaves the live generation alone in the store."""
        proc = self.command(row, "prune", "--keep", "1", "--grace", "0")
        self.check(row, "final prune", proc, published=False)
        live = self.w.ingress()["metadata"]["labels"]["bucket"]
        if proc is None or proc.returncode or self.w.buckets() != [live]:
            row.problems.append(f"final prune left {self.w.buckets()}, live {live}")

    def change(self) -> None:
        """A few upserts and deletions, seeded, in the manifest and in the ground truth."""
        events: list[dict[str, object]] = []
        for _ in range(self.rng.randint(1, 6)):
            self.w.version += 1
            i = self.rng.randrange(400)
            ev = doc(i, self.w.version, TWO_SECTIONS, self.w.version % 28 + 1)
            if self.rng.random() < 0.2:
                ev = {"op": "delete", "section": ev["section"], "key": ev["key"], "version": ev["version"]}
            events.append(ev)
            self.w.model.event(ev)
        app = App(self.w.settings())
        try:
            app.applier.apply_raw([(f"harness:{i}", orjson.dumps(e)) for i, e in enumerate(events)])
        finally:
            app.close()

    @contextmanager
    def faults(self, row: Row, target: str, kind: str, rate: float, n: int) -> Iterator[None]:
        seed = random.Random(f"{self.seed}/{target}/{kind}/{rate}/{n}").randrange(2**31)
        before = self.w.proxy.faults_injected + self.kube.injected
        if target == "s3":
            install(self.w.proxy, S3_KINDS[kind], rate, seed)
        else:
            self.kube.inject(KUBE_KINDS[kind], rate, seed)
        try:
            yield
        finally:
            self.w.proxy.clear()
            self.kube.inject((), 0.0, 0)
            row.injected += self.w.proxy.faults_injected + self.kube.injected - before

    def command(self, row: Row, *args: str) -> subprocess.CompletedProcess[str] | None:
        """The real CLI; None when it hung. A failure must be exit status 1 and one `error:` line."""
        try:
            proc = cli(*args, env=self.w.env, check=False, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            row.unclear += 1
            row.problems.append(f"sitemaps {' '.join(args)} still running after {TIMEOUT:.0f}s")
            return None
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        if proc.returncode and (proc.returncode != 1 or not last.startswith("error: ") or "Traceback" in proc.stderr):
            row.unclear += 1
            row.problems.append(f"sitemaps {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def check(self, row: Row, what: str, proc: subprocess.CompletedProcess[str] | None, published: bool = True) -> bool:
        """The live generation holds the truth it held, or (after a publish) the new model; a successful
        publish serves the new model. True when served is what the command said it did."""
        new = self.w.model.expected()
        served = self.served(row, what, [self.truth, new] if published else [self.truth])
        if served is None:
            return False
        self.truth = served
        if proc is None or proc.returncode:
            return False
        if published and "published generation" in proc.stdout and served != new:
            row.problems.append(f"{what} said {proc.stdout.strip()!r} but the old model is served")
            return False
        return True

    def served(self, row: Row, what: str, truths: Sequence[dict[str, str | None]]) -> dict[str, str | None] | None:
        """Which of `truths` the live generation holds exactly; None (counted) when it is broken or gone."""
        w = self.w
        name = (w.ingress()["metadata"].get("labels") or {}).get("bucket", "")
        gen = w.layout.generation(name)
        if gen is None:
            row.broken += 1
            row.problems.append(f"after {what} the Ingress names {name!r}, no generation of ours")
            return None
        bucket, prefix = w.layout.bucket_of(gen), w.layout.key_prefix(gen)
        try:
            keys = w.server.list_keys(bucket, prefix or None)
        except (S3Error, InvalidResponseError):  # no such bucket
            keys = []
        if not keys:
            row.deleted += 1
            row.problems.append(f"after {what} the live generation {name} is gone")
            return None
        failure: BaseException | None = None
        for truth in truths:
            try:
                w.serving(truth=truth)
                return truth
            except AssertionError as exc:
                failure = exc
            except (urllib.error.HTTPError, S3Error, InvalidResponseError) as exc:
                if getattr(exc, "code", None) in (404, "NoSuchKey") or "NoSuchKey" in str(exc):
                    row.deleted += 1
                    row.problems.append(f"after {what} a file of the live generation {name} is gone: {exc}")
                    return None
                failure = exc
        row.broken += 1
        row.problems.append(f"after {what} the live generation {name} is neither model: {failure!r:.500}")
        return None


@contextmanager
def deployment(server: S3Server, tmp: Path, seed: int, publishes: int, one_bucket: bool = False) -> Iterator[Harness]:
    """A fresh deployment on `server`, its first generation published; its buckets are deleted afterwards."""
    label = f"S3 ({server.kind}{', one bucket' if one_bucket else ''})"
    tmp.mkdir(parents=True, exist_ok=True)
    with FlakyKube() as kube, FaultProxy(server.endpoint) as proxy:
        for w in make_world(
            server,
            kube,
            proxy,
            unique_name("fh", 6) + "-",
            tmp,
            f"sqlite:///{tmp / 'manifest.db'}",
            one_bucket=one_bucket,
        ):
            yield Harness(w, kube, seed, publishes, label)


def run_world(
    server: S3Server, tmp: Path, seed: int, scenarios: Sequence[Scenario], publishes: int, one_bucket: bool = False
) -> list[Row]:
    with deployment(server, tmp, seed, publishes, one_bucket) as harness:
        rows = []
        for s in scenarios:
            rows.append(harness.scenario(*s))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)  # progress of long runs
        harness.finish(rows[-1])
    return rows


def broker_row(moto: MotoS3Server, tmp: Path) -> Row:
    """`sitemaps run` with its broker stopped and restarted mid-stream: tests/test_kafka.py's scenario, which
    checks that every event is applied once and the served sitemaps equal the ground truth."""
    from tests.test_kafka import test_broker_stopped_and_restarted_mid_stream as scenario

    tmp.mkdir(parents=True, exist_ok=True)
    row = Row("Kafka (Tansu)", "broker stopped 3 s mid-stream", "-")
    started = time.monotonic()
    try:
        scenario(moto, tmp)
        row.recovered = True
    except Exception as exc:  # whatever it is, the row says it
        row.broken += 1
        row.problems.append(f"broker scenario: {exc!r:.2000}")
    row.seconds = time.monotonic() - started
    manifest = Manifest.open(f"sqlite:///{tmp / 'manifest.db'}")
    try:
        gens = manifest.generations.all()
    finally:
        manifest.close()
    row.attempted = len(gens)
    row.succeeded = sum(g.published_at is not None for g in gens)
    row.failed = row.attempted - row.succeeded
    return row


def run(tmp: Path, seed: int, full: bool, servers: Mapping[str, S3Server], broker: bool = True) -> list[Row]:
    """The small run (CI) or the full one; `servers` holds "moto", and "rclone" for the full run."""
    moto = servers["moto"]
    assert isinstance(moto, MotoS3Server)
    if not full:
        rows = run_world(moto, tmp / "moto", seed, SMALL, publishes=2)
    else:
        rows = run_world(moto, tmp / "moto", seed, full_scenarios(), publishes=3)
        rows += run_world(servers["rclone"], tmp / "rclone", seed, SMALL, publishes=3)
        rows += run_world(moto, tmp / "one-bucket", seed, SMALL, publishes=3, one_bucket=True)
    if broker:
        rows.append(broker_row(moto, tmp / "broker"))
    return rows


COLUMNS = (
    "target",
    "fault",
    "rate",
    "publishes",
    "succeeded",
    "failed",
    "faults injected",
    "prunes ok/failed",
    "live broken",
    "live deleted",
    "unclear errors",
    "recovered",
    "seconds",
)


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells: list[Any] = [
            r.target,
            r.kind,
            r.rate,
            r.attempted,
            r.succeeded,
            r.failed,
            r.injected,
            f"{r.prunes_ok}/{r.prunes_failed}",
            r.broken,
            r.deleted,
            r.unclear,
            "yes" if r.recovered else "NO",
            f"{r.seconds:.0f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--full",
        action="store_true",
        help="every fault kind at 5%%, 20%% and 50%%, and rclone and the one-bucket layout (tens of minutes)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fault-harness-") as tmp, ExitStack() as stack:
        servers: dict[str, S3Server] = {"moto": stack.enter_context(MotoS3Server())}
        if args.full:
            servers["rclone"] = stack.enter_context(RcloneS3Server())
        rows = run(Path(tmp), args.seed, args.full, servers)
    print(table(rows))
    for r in rows:
        for p in r.problems:
            print(f"PROBLEM {r.target} / {r.kind} / {r.rate}: {p}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
