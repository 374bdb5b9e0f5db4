"""What the benchmarks share: the synthetic catalog as a file, the real CLI run as a measured subprocess,
a scratch manifest database, and moto's S3 in a process of its own.

Scripts put the repository on sys.path before importing this module (they are run as `python bench/x.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sitemap_keeper.snapshot import synthetic
from tests.conftest import fresh_pg_database
from tests.services.ports import LOCALHOST, ManagedProcess, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def made_dir(value: str) -> Path:
    """An argparse type for a directory the benchmark writes into: made, with its parents, if missing (one that
    cannot be made is a usage error, in one line)."""
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot make directory {value}: {exc.strerror or exc}") from exc
    return path


def catalog_file(n: int, cache: Path) -> Path:
    """The synthetic catalog of n documents as JSON lines (a rebuild source), written once per cache dir."""
    path = cache / f"catalog-{n}.jsonl"
    return path if path.exists() else synthetic.write_catalog(path, n)


def write_events(path: Path, n: int, catalog: int) -> None:
    """n synthetic change events over a catalog of that many documents, as JSON lines (seeded: the same each run)."""
    with path.open("wb") as f:
        for raw in synthetic.changes(n, catalog, seed=1):
            f.write(raw + b"\n")


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """The manifest's URL: an SQLite file in workdir, or a scratch database on 127.0.0.1:5432 dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'manifest.db'}"
        return
    yield from fresh_pg_database()


def start_moto(log: Path) -> tuple[ManagedProcess, str]:
    """moto's S3 in its own process, as a real S3 server is: its work does not share our interpreter.

    Its buckets live in that process's memory (and unnamed temporary files), so they are gone once it stops.
    """
    port = free_port()
    proc = ManagedProcess([sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(port)], log)
    proc.start()
    wait_for_port(LOCALHOST, port, timeout=30)
    return proc, f"{LOCALHOST}:{port}"


@dataclass(slots=True)
class Step:
    """One run of the CLI: its output, wall seconds, and the resources of all its processes."""

    args: list[str]
    out: str
    wall: float
    peak_rss_mib: float  # the largest single process: the command itself or one of its workers
    command_rss_mib: float  # the command's own process (its workers belong to a fork server)
    cpu: float  # user + system seconds of the command and all its workers


@functools.cache
def _become_subreaper() -> None:
    """Have orphaned descendants re-parented to us, so that we can reap them and read their rusage.

    The product's pools use forkserver: the workers are children of a fork server that the command never
    waits for, so neither wait4 on the command nor RUSAGE_CHILDREN would ever count them.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if not sys.platform.startswith("linux") or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("the benchmarks measure memory with PR_SET_CHILD_SUBREAPER: Linux only")


def children(pid: int | str = "self") -> set[int]:
    """The child processes of `pid`, whichever of its threads started them."""
    found: set[int] = set()
    with contextlib.suppress(OSError):  # the process is gone
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (task / "children").read_text().split())
    return found


def cli(args: list[str], env: dict[str, str], logs: Path, python: str = sys.executable) -> Step:
    """Run `sitemaps ARGS` (installed for `python`); fail with its standard error if it fails. Output goes to
    files under `logs` (never a pipe: we block in wait4, and a long rebuild writes a progress line a second)."""
    _become_subreaper()
    servers = children()  # what the benchmark itself runs (moto): not part of the step
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{args[0]}.out", logs / f"{args[0]}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [python, "-m", "sitemap_keeper", *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    usages = [usage, *_reap_orphans(servers)]
    if proc.returncode != 0:
        raise SystemExit(f"sitemaps {args[0]} failed ({proc.returncode}):\n{err_path.read_text()[-4000:]}")
    return Step(
        args,
        out_path.read_text(),
        wall,
        max(u.ru_maxrss for u in usages) / 1024,
        usage.ru_maxrss / 1024,
        sum(u.ru_utime + u.ru_stime for u in usages),
    )


def _reap_orphans(servers: set[int], timeout: float = 60.0) -> list[resource.struct_rusage]:
    """Wait for the command's leftover processes (the fork server exits once the command has gone)."""
    usages: list[resource.struct_rusage] = []
    deadline = time.monotonic() + timeout
    while left := children() - servers:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                reaped, _status, usage = os.wait4(pid, os.WNOHANG)
                if reaped:
                    usages.append(usage)
        if time.monotonic() > deadline:
            print(
                f"warning: processes {sorted(left)} outlived the command; their memory is not counted", file=sys.stderr
            )
            break
        time.sleep(0.01)
    return usages
