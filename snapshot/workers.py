"""The worker processes of a rebuild, a publish or an apply: a pool whose workers never outlive the command.

forkserver: workers start clean (no inherited connections or threads) and open their own engine. When the
command is killed (SIGKILL, the OOM killer), nothing tells its workers: they wait on their queue for ever (each
holds the queue's write end itself), and so does the forkserver (they hold its liveness pipe), keeping the
command's stdout and stderr open. So each worker watches the command's process and exits when it ends.
Ctrl-C in a terminal reaches the whole process group, workers included: they ignore it, and the command
alone decides what a Ctrl-C does (its pool shut down, or it exits and they follow).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver, get_context

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.connection import connect

WATCH_SECONDS = 0.5
# Imported once by the fork server, so that each worker it forks has them already: a pool after the first
# does not import SQLAlchemy again, which every publish would pay (docs/performance.md, "Figures behind the
# code's rules").
PRELOAD = ["sitemap_keeper.snapshot.rebuild"]

_manifest: Manifest | None = None


def worker_pool(workers: int, database_url: str | None = None, niceness: int = 0) -> ProcessPoolExecutor:
    """A pool of `workers` processes at `niceness`; with `database_url`, each opens the manifest there
    (`in_worker`)."""
    context = get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    _start_fork_server()
    return ProcessPoolExecutor(
        max(1, workers), mp_context=context, initializer=_start, initargs=(os.getpid(), database_url, niceness)
    )


def _start_fork_server() -> None:
    """Start this process's fork server, if it is not running, with this process's import path.

    Python 3.11 starts it with `python -c`, whose import path begins with the working directory, and imports
    PRELOAD before it takes this process's path: run from a source checkout with the package installed, the
    workers ran the checkout's tree (without its compiled extension), not the package the command runs. So the
    server starts with PYTHONSAFEPATH (no working directory) and PYTHONPATH (this process's path, in order),
    set only while it starts.
    """
    wanted = {"PYTHONSAFEPATH": "1", "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def in_worker() -> Manifest:
    assert _manifest is not None, "the pool was made without a database_url"
    return _manifest


def _start(command: int, database_url: str | None, niceness: int) -> None:
    global _manifest
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(niceness)
    threading.Thread(target=_watch, args=(command,), name="sitemaps-watch", daemon=True).start()
    if database_url is not None:
        _manifest = Manifest(connect(database_url))


def _watch(pid: int) -> None:
    try:
        # Readable once the process has exited, even while it is a zombie nobody has reaped yet.
        select.select([os.pidfd_open(pid)], [], [])
    except (AttributeError, OSError):  # no pidfd (not Linux): poll
        while _alive(pid):
            time.sleep(WATCH_SECONDS)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
