"""The crash harness: the real CLI against a real deployment, kill -9 at random points of apply, publish and
prune; after every kill and every restart, what is served is read over HTTP, every file validated, and
compared URL for URL (with lastmod) with the ground truth.

    .venv/bin/python -m tests.harness.crash --points 100 --seed 1 --config all

A point is a named checkpoint (SITEMAPS_KILL_AT=step or step@k, see snapshot/crashpoints.py) or a random instant
of the command's working time (SIGKILL to its process group). Everything is drawn from the seed; a failure
prints the command that replays it (the instants are timings, so those replay approximately).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from sitemap_keeper.snapshot.news import WINDOW
from sitemap_keeper.snapshot.publish import STEPS
from tests.harness.deployments import DATABASES, HOST, STORES, Deployment, deployment
from tests.harness.served import NEWS, Tally, compare
from tests.support import Model, cli

CONFIGS = tuple(f"{db}-{store}" for db in DATABASES for store in STORES)
PHASES = ("apply", "publish", "prune")
SECTIONS = ("books", "authors", "series", "news")  # the documents of `news` carry articles
CATALOG = 1500  # documents: 30 shards of at most 50 URLs
BATCHES, BATCH = 3, 20  # events per cycle: three transactions of 20
KEEP = 2


@dataclass(frozen=True, slots=True)
class Kill:
    checkpoint: str | None  # "render", "apply-commit@2", ...; None: at a random instant
    fraction: float  # where in the command's working time the instant falls

    def describe(self, delay: float | None = None) -> str:
        return f"at {self.checkpoint}" if self.checkpoint else f"at {delay or 0:.2f}s"


@dataclass(slots=True)
class Row:
    kills: int = 0
    at_checkpoint: int = 0
    at_instant: int = 0
    missed: int = 0  # the command finished before the instant, or never reached the checkpoint
    leftovers: int = 0  # generations a successful prune should have deleted, or deleted and should not have
    tally: Tally = field(default_factory=Tally)


@dataclass
class Result:
    config: str
    seed: int
    rows: dict[str, Row] = field(default_factory=lambda: {p: Row() for p in PHASES})
    checkpoints: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False  # stopped by SIGINT or SIGTERM: a partial count

    @property
    def kills(self) -> int:
        return sum(r.kills for r in self.rows.values())


class Harness:
    def __init__(self, d: Deployment, tmp: Path, seed: int, verbose: bool = False, catalog: int = CATALOG) -> None:
        self.d, self.tmp, self.verbose, self.catalog = d, tmp, verbose, catalog
        self.rnd = random.Random(f"{seed}/{d.name}")
        self.result = Result(d.name, seed)
        self.model: Model = NewsModel()
        self.published: dict[str, str | None] = {}  # what the live generation must hold
        self.live_gens: set[str] = set()  # every generation ever live
        self.version = 1
        self.durations: dict[str, float] = {}
        self.point = ""  # the current point, for messages

    # -- the workload ------------------------------------------------------------------------------------

    def run(self, points: int) -> Result:
        started = time.monotonic()
        docs = [self.doc(i, 1) for i in range(self.catalog)]
        source = self.tmp / "catalog.jsonl"
        source.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
        cli("rebuild", "--source", str(source), env=self.d.env)
        for d in docs:
            self.model.event(d)
        self.published = self.model.expected()
        assert any(u.startswith(NEWS) for u in self.published), "the catalog has no article in the news window"
        self.check("rebuild", "after the rebuild", [self.published], live=True)
        cycle = 0
        try:
            while self.result.kills < points and cycle < points:
                cycle += 1  # a point in each phase of every cycle, until there are enough
                kills = {p: self.choose(p) for p in PHASES}
                self.apply(kills["apply"] if self.result.kills < points else None)
                self.publish(kills["publish"] if self.result.kills < points else None)
                self.prune(kills["prune"] if self.result.kills < points else None)
            cli("verify", "--deep", env=self.d.env)
        except KeyboardInterrupt:
            self.result.interrupted = True
        except (AssertionError, subprocess.SubprocessError) as exc:  # a command that fails when run again
            self.result.interrupted = True
            self.fail("error", f"stopped: {str(exc)[-1500:]}")
        self.result.seconds = time.monotonic() - started
        return self.result

    def doc(self, i: int, version: int) -> dict[str, object]:
        section = SECTIONS[i % len(SECTIONS)]
        moved = f"-v{version}" if version > 1 and self.rnd.random() < 0.1 else ""  # a document's URL changes
        day, hour = self.rnd.randint(1, 28), self.rnd.randint(0, 23)
        doc: dict[str, object] = {
            "section": section,
            "key": str(i),
            "loc": f"https://{HOST}/{section}/{i}{moved}",
            "lastmod": f"2024-07-{day:02d}T{hour:02d}:00:00+00:00",
            "version": version,
        }
        if section == "news" and self.rnd.random() < 0.9:  # some news documents carry no article
            # Far from the window's edge (48 hours), so no article ages out during a run: the window is the model's.
            age = self.rnd.choice([self.rnd.uniform(0, 40), self.rnd.uniform(56, 90)]) * 3600
            published = datetime.fromtimestamp(int(time.time() - age), UTC).isoformat()
            doc["news"] = {
                "publication": {"name": "Crash Times", "language": "en"},
                "publication_date": published,
                "title": f"Story {i} v{version}",
            }
        return doc

    def events(self) -> list[dict[str, object]]:
        out = []
        for _ in range(BATCH):
            self.version += 1
            i = self.rnd.randrange(self.catalog + 200)  # some new documents
            if self.rnd.random() < 0.15:
                out.append(
                    {"op": "delete", "section": SECTIONS[i % len(SECTIONS)], "key": str(i), "version": self.version}
                )
            else:
                out.append(self.doc(i, self.version))
        return out

    def choose(self, phase: str) -> Kill:
        fraction = self.rnd.random()
        if self.rnd.random() < 0.5:
            return Kill(None, fraction)
        if phase == "apply":
            return Kill(f"apply-commit@{self.rnd.randint(1, BATCHES)}", fraction)
        if phase == "prune":
            return Kill(self.rnd.choice(["prune-delete", "prune-abandoned"]), fraction)
        return Kill(self.rnd.choice(STEPS), fraction)

    def apply(self, kill: Kill | None) -> None:
        batches = [self.events() for _ in range(BATCHES)]
        path = self.tmp / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for b in batches for e in b))
        args = ("apply", str(path), "--batch-size", str(BATCH))
        after = copy.deepcopy(self.model)
        committed = [self.model.expected()]  # the truth after 0, 1, ... whole batches
        for b in batches:
            for e in b:
                after.event(e)
            committed.append(after.expected())
        if kill is not None and self.attempt("apply", args, kill, [self.published]):
            self.check("apply", "after the kill", [self.published])
            cli("publish", env=self.d.env)  # the restarted service publishes whatever was committed
            nth = int(kill.checkpoint.rsplit("@", 1)[1]) if kill.checkpoint else 0
            allowed = committed[nth - 1 : nth] if nth else committed
            i = self.check("apply", "published after the kill (whole batches only)", allowed, live=True)
            self.published = allowed[max(i, 0)]
        self.timed("apply", args)
        self.model = after

    def publish(self, kill: Kill | None) -> None:
        after = self.model.expected()
        if kill is not None and kill.checkpoint and after == self.published:
            # Nothing is dirty (a killed apply had committed every batch, and its restart published them): this
            # publish has no checkpoint to reach. Not a point.
            self.result.rows["publish"].missed += 1
            kill = None
        if kill is not None and self.attempt("publish", ("publish",), kill, [self.published, after]):
            if kill.checkpoint is None:
                allowed = [self.published, after]
            else:  # the switch is the one step that changes what is served
                allowed = [after] if kill.checkpoint == "switched" else [self.published]
            self.check("publish", "after the kill", allowed, live=True)
        self.timed("publish", ("publish",))
        self.check("publish", "after the restart", [after], live=True)
        self.published = after

    def prune(self, kill: Kill | None) -> None:
        args = ("prune", "--keep", str(KEEP), "--grace", "0")
        if kill is not None and self.attempt("prune", args, kill, [self.published]):
            self.check("prune", "after the kill", [self.published])
        self.timed("prune", args)
        self.check("prune", "after the restart", [self.published])
        gens = self.d.generations()
        live = self.d.observe().generation
        # Kept: the live one and the newest published; gone: the rest and every half-built one.
        wrong = max(0, len(gens) - KEEP) + len(gens - self.live_gens) + (live not in gens)
        if wrong:
            self.result.rows["prune"].leftovers += wrong
            self.fail("prune", f"after the restart: the store holds {sorted(gens)} (live {live})")

    # -- running and killing -------------------------------------------------------------------------------

    def timed(self, phase: str, args: tuple[str, ...]) -> None:
        t = time.monotonic()
        cli(*args, env=self.d.env)
        self.durations[phase] = time.monotonic() - t

    def attempt(self, phase: str, args: tuple[str, ...], kill: Kill, allowed: list[dict[str, str | None]]) -> bool:
        """Run the command and kill it as `kill` says; False if it finished first (not a point)."""
        env = {**os.environ, **self.d.env}
        delay = None
        if kill.checkpoint:
            env["SITEMAPS_KILL_AT"] = kill.checkpoint
        else:  # an instant of the life of the last run of this command (start-up included: it may be slow)
            delay = kill.fraction * self.durations.get(phase, 1.0)
        self.point = f"point {self.result.kills + 1} ({phase} {kill.describe(delay)})"
        with open(self.tmp / "killed.log", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sitemap_keeper", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            try:
                rc = self.wait_and_kill(proc, phase, delay, allowed)
            finally:  # what the killed command left running (render workers, the forkserver)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if rc not in (0, -signal.SIGKILL):
            self.fail(phase, f"exited {rc}: {(self.tmp / 'killed.log').read_text()[-800:]}")
        row = self.result.rows[phase]
        if rc != -signal.SIGKILL:
            if kill.checkpoint and phase != "prune":  # every apply and publish passes all of its own
                self.fail(phase, f"finished without reaching checkpoint {kill.checkpoint}")
            row.missed += 1
            return False
        row.kills += 1
        if kill.checkpoint:
            row.at_checkpoint += 1
            self.result.checkpoints[kill.checkpoint.split("@")[0]] += 1
        else:
            row.at_instant += 1
        if self.verbose:
            print(f"  {self.d.name} {self.point}", flush=True)
        return True

    def wait_and_kill(
        self, proc: subprocess.Popen[bytes], phase: str, delay: float | None, allowed: list[dict[str, str | None]]
    ) -> int:
        if delay is None:
            return proc.wait(timeout=300)
        started = time.monotonic()
        try:
            return proc.wait(timeout=delay / 2)
        except subprocess.TimeoutExpired:
            pass
        self.check(phase, "while it ran", allowed)  # a crawler reading during the command
        try:
            return proc.wait(timeout=max(started + delay - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=60)

    # -- observing -------------------------------------------------------------------------------------------

    def check(self, phase: str, when: str, allowed: list[dict[str, str | None]], live: bool = False) -> int:
        """Observe what is served; it must be exactly one of `allowed`. Returns which (-1: none)."""
        seen = self.d.observe()
        tally, best = compare(seen, allowed)
        self.result.rows.setdefault(phase, Row()).tally.add(tally)
        if tally.violations:
            self.fail(phase, f"{when}: {tally} {seen.broken}")
            return -1
        if live:
            self.live_gens.add(seen.generation)
        return best

    def fail(self, phase: str, what: str) -> None:
        r = self.result
        where = "rebuild" if phase == "rebuild" else self.point
        r.failures.append(
            f"{r.config} {where} {what}\n  replay: .venv/bin/python -m tests.harness.crash "
            f"--seed {r.seed} --config {r.config} --points {r.kills + 1} --verbose"
        )


class NewsModel(Model):
    """The ground truth with the news window: NEWS + loc -> title of each article published less than two days
    ago (no article is near that age: `Harness.doc`)."""

    def __init__(self) -> None:
        super().__init__()
        self.articles: dict[tuple[str, str], tuple[str, float, str]] = {}

    def event(self, ev: dict[str, object]) -> bool:
        if not super().event(ev):
            return False
        ident = (str(ev["section"]), str(ev["key"]))
        news = ev.get("news")
        if ev.get("op", "upsert") == "delete" or not isinstance(news, dict):
            self.articles.pop(ident, None)
        else:
            published = datetime.fromisoformat(str(news["publication_date"])).timestamp()
            self.articles[ident] = (str(ev["loc"]), published, str(news["title"]))
        return True

    def expected(self) -> dict[str, str | None]:
        cut = time.time() - WINDOW
        return {**super().expected(), **{NEWS + loc: title for loc, at, title in self.articles.values() if at > cut}}


def run_config(config: str, seed: int, points: int, verbose: bool = False, catalog: int = CATALOG) -> Result:
    db, store = config.split("-")
    with tempfile.TemporaryDirectory(prefix=f"crash-{config}-") as tmp, deployment(db, store, Path(tmp)) as d:
        return Harness(d, Path(tmp), seed, verbose, catalog).run(points)


COLUMNS = (
    "config",
    "phase",
    "kills",
    "checkpoint",
    "instant",
    "missed",
    "observed",
    "lost",
    "duplicated",
    "stale",
    "extra",
    "broken",
    "leftovers",
)


def table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    total = Row()
    for res in results:
        for phase in (*PHASES, "rebuild"):
            row = res.rows.get(phase)
            if row is None:
                continue
            for f in ("kills", "at_checkpoint", "at_instant", "missed", "leftovers"):
                setattr(total, f, getattr(total, f) + getattr(row, f))
            total.tally.add(row.tally)
            lines.append(_line(res.config, phase, row))
    lines.append(_line("**all**", "", total))
    return "\n".join(lines)


def _line(config: str, phase: str, r: Row) -> str:
    t = r.tally
    cells = (
        config,
        phase,
        r.kills,
        r.at_checkpoint,
        r.at_instant,
        r.missed,
        t.observations,
        t.lost,
        t.duplicated,
        t.stale,
        t.extra,
        t.broken,
        r.leftovers,
    )
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100, help="kills per configuration")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", default="all", help=f"all, or comma-separated of {', '.join(CONFIGS)}")
    parser.add_argument("--verbose", action="store_true", help="print every point as it is killed")
    args = parser.parse_args(argv)
    configs = CONFIGS if args.config == "all" else tuple(args.config.split(","))
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: print what was counted
    results = []
    for config in configs:
        res = run_config(config, args.seed, args.points, args.verbose)
        results.append(res)
        print(
            f"{config}: {res.kills} kills in {res.seconds:.0f}s{' (interrupted)' if res.interrupted else ''}; "
            "checkpoints hit: " + ", ".join(f"{k} {n}" for k, n in sorted(res.checkpoints.items())),
            flush=True,
        )
        print(table([res]), flush=True)
        if res.interrupted:
            break
    print(f"\nseed {args.seed}, {args.points} points per configuration\n")
    print(table(results))
    failures = [f for r in results for f in r.failures]
    short = [r.config for r in results if r.kills < args.points]
    for f in failures:
        print("\nVIOLATION " + f)
    if short:
        print(f"\ntoo few kills landed in: {', '.join(short)}")
    return 1 if failures or short else 0


if __name__ == "__main__":
    sys.exit(main())
