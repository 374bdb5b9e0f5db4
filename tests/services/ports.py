"""Small helpers shared by the test servers: free ports, readiness waits, managed child processes.

Child processes are started in their own process group (``start_new_session=True``) so that
``stop()`` / ``kill()`` reach the whole group, and every live process is registered in a module-level
registry that an ``atexit`` hook empties, so an interrupted pytest run leaves no orphan behind.
When a process is started from the main thread it additionally gets ``PR_SET_PDEATHSIG=SIGKILL``
(Linux), so it dies even if the test process itself is SIGKILLed.  (PDEATHSIG fires when the
*thread* that forked exits, which is why it is only used from the main thread.)
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that is free right now on ``host`` (the usual bind-to-0 trick).

    There is an unavoidable window between this call and the server binding the port; servers that
    can bind port 0 themselves (moto, the fault proxy, the kube stand-in) do so instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy and return its value; raise ``TimeoutError`` after ``timeout``
    seconds.  Exceptions raised by the predicate count as "not yet" (servers fail in many ways while
    they boot); the last one is named in the error."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    wait_for(lambda: port_open(host, port), timeout, interval=0.05, what=f"{host}:{port} to accept connections")


def wait_for_port_closed(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until nothing accepts TCP connections on ``host:port`` any more."""
    wait_for(lambda: not port_open(host, port), timeout, interval=0.05, what=f"{host}:{port} to close")


def unique_name(prefix: str = "t", length: int = 10) -> str:
    """A lowercase name that is unique for this run: ``prefix`` + random hex (valid as a bucket,
    topic or Kubernetes name as long as ``prefix`` is)."""
    return f"{prefix}{uuid.uuid4().hex[:length]}"


# --------------------------------------------------------------------------------------------------
# managed child processes
# --------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def _pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigkill = int(signal.SIGKILL)

    def _preexec() -> None:  # runs in the child between fork and exec: keep it trivial
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)

    return _preexec


class ManagedProcess:
    """A child process in its own process group, registered for cleanup at interpreter exit.

    Output goes to ``log_path`` (a file), never to a pipe, so a chatty server cannot block on a
    full pipe buffer.
    """

    def __init__(
        self, argv: Sequence[str], log_path: Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.argv[0]} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )
        with _live_lock:
            _live.add(self)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, escalate to SIGKILL after ``timeout`` seconds, and reap."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group (no graceful shutdown) and reap."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        # also kill leftovers of the group (a server that forked helpers)
        self._signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        with _live_lock:
            _live.discard(self)

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the process log, for error messages."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")


def _cleanup_all() -> None:
    with _live_lock:
        procs = list(_live)
    for p in procs:
        with contextlib.suppress(Exception):
            p.stop(timeout=2.0)


atexit.register(_cleanup_all)


class LocalServer:
    """What every test server shares: an address on this machine, and `with` to start and stop it."""

    host: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"
