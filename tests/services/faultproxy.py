"""A small threaded HTTP/1.1 reverse proxy that injects faults, for S3 (or any HTTP) servers.

Point the client at ``proxy.endpoint`` instead of the server.  Requests are forwarded byte-exact:
the request line and header block are relayed exactly as the client sent them (same ``Host``,
same header order and case), so AWS SigV4 signatures, which cover the ``Host`` header, stay valid
-- checked against rclone, which verifies signatures (moto does not).  Responses are relayed
byte-exact too.  Request bodies are buffered in memory before forwarding (fine for test data), which
lets the proxy answer ``Expect: 100-continue`` itself and transparently re-send a request once when an
idle keep-alive upstream connection turns out to be closed.

Faults (``Fault.action``):

``error``
    answer ``status`` (default 503) with an S3-style XML error body (``application/xml``, so minio
    parses it into ``S3Error`` with ``code``) without contacting the upstream.
``delay``
    sleep ``seconds`` (default 1.0), then forward normally.
``reset``
    read the request, then close the client socket with an RST (SO_LINGER 0) and no response; the
    upstream never sees the request.
``reset_after_upstream``
    forward the request (the upstream performs it!), discard the response and RST the client: the
    "it happened but the client saw an error" case.
``truncate``
    forward, then send the response head and only the first half of the body, then close (FIN) --
    urllib3 raises ``ProtocolError`` (``IncompleteRead``) while the body is read.
``hang``
    read the request and answer nothing for ``seconds`` (default 60) or until the proxy stops or
    the client gives up; then close the connection.

Which request gets a fault is decided by :class:`FaultRule` (method / path regex filters plus a
trigger: always, ``every_nth``, ``rate`` with a ``seed``, ``after`` N matches, at most ``times``
injections) and by a one-shot queue (:meth:`FaultProxy.enqueue`), which is consulted first.

Counters: ``proxy.stats`` (``requests``; ``forwarded`` = upstream responses relayed whole, delayed ones
included; ``fault:<action>`` per injected fault; ``upstream_errors`` = upstream unreachable, answered
with a reset), ``proxy.faults_injected`` (sum of ``fault:*``), ``proxy.injected(action)``, per-rule
``rule.matched`` / ``rule.injected``, and ``proxy.log`` (method, target, fault, status per request).
Every request is counted and logged before its answer leaves, so a client holding an answer finds it
counted.

minio maps an injected ``error`` to ``S3Error`` (with the XML ``Code``) -- except for HEAD requests
(``stat_object``, ``bucket_exists``), which carry no body: 403/404/405/409/501 become a synthesised
``S3Error``, other statuses (500, 503, ...) ``minio.error.ServerError``.

NB: minio's default HTTP client retries 500/502/503/504 and connection errors 5 times, which hides
single faults -- build clients with ``tests.services.s3.http_client(retries=0)`` to observe them.
"""

from __future__ import annotations

import contextlib
import http
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast
from xml.sax.saxutils import escape

from .ports import LOCALHOST, LocalServer

FaultAction = Literal["error", "delay", "reset", "reset_after_upstream", "truncate", "hang"]

_S3_CODES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Bad Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    409: ("OperationAborted", "A conflicting conditional operation is currently in progress."),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "Bad Gateway"),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Gateway Timeout"),
}

_MAX_HEAD = 256 * 1024


class _Reader(Protocol):
    """The buffered reader of ``socket.makefile("rb")``."""

    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class _ClientGone(Exception):
    """The client closed its connection."""


class _UpstreamGone(Exception):
    """The upstream closed before a full response was read."""

    def __init__(self, message: str, before_response: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response


@dataclass
class Fault:
    """What to do to a request.  See the module docstring for the actions."""

    action: FaultAction
    status: int = 503
    code: str | None = None
    message: str | None = None
    seconds: float | None = None

    @property
    def duration(self) -> float:
        if self.seconds is not None:
            return self.seconds
        return 60.0 if self.action == "hang" else 1.0


@dataclass
class FaultRule:
    """When to apply ``fault``.

    A request *matches* when ``method`` (exact, case-insensitive; ``None`` = any) and ``path`` (regex
    searched in the request target, i.e. path plus query string; ``None`` = any) both match.  Among
    matching requests, the first ``after`` are skipped; then the fault fires on every match, or on
    every ``every_nth`` match (counted from the first non-skipped one), or with probability ``rate``
    (``random.Random(seed)``); at most ``times`` times in total.
    """

    fault: Fault
    method: str | None = None
    path: str | None = None
    every_nth: int | None = None
    rate: float | None = None
    seed: int | None = None
    times: int | None = None
    after: int = 0
    matched: int = 0
    injected: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _path_re: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._path_re = re.compile(self.path) if self.path is not None else None
        if self.every_nth is not None and self.every_nth < 1:
            raise ValueError("every_nth must be >= 1")

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self._path_re is None or self._path_re.search(target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.injected >= self.times

    def fires(self, method: str, target: str) -> bool:
        """Count a request against this rule and say whether the fault applies (caller holds the lock)."""
        if self.exhausted or not self.matches(method, target):
            return False
        self.matched += 1
        n = self.matched - self.after
        if n <= 0:
            return False
        if self.every_nth is not None and n % self.every_nth != 0:
            return False
        if self.rate is not None and self._rng.random() >= self.rate:
            return False
        self.injected += 1
        return True


@dataclass
class ProxiedRequest:
    """One request seen by the proxy (for assertions)."""

    method: str
    target: str
    fault: FaultAction | None
    status: int | None  # status sent to the client, None when none was sent


def s3_error_body(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{escape(request_id)}</RequestId>"
        "<HostId>faultproxy</HostId></Error>"
    ).encode()


class _Head:
    """A parsed HTTP message head; ``raw`` is exactly what was received."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        lines = raw.split(b"\r\n")
        self.start_line = lines[0].decode("latin-1")
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.decode("latin-1").partition(":")
            self.headers.append((name.strip().lower(), value.strip()))

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def has_token(self, name: str, token: str) -> bool:
        return any(token in (t.strip().lower() for t in v.split(",")) for k, v in self.headers if k == name)


def _read_head(reader: _Reader) -> bytes | None:
    """Read up to and including the blank line; None on clean EOF before any byte."""
    buf = bytearray()
    while True:
        line = reader.readline(_MAX_HEAD)
        if not line:
            if not buf:
                return None
            raise _ClientGone("EOF inside message head")
        if not buf and line in (b"\r\n", b"\n"):
            continue  # tolerate stray CRLF between messages
        buf += line
        if line in (b"\r\n", b"\n"):
            return bytes(buf)
        if len(buf) > _MAX_HEAD:
            raise ValueError("message head too large")


def _read_exact(reader: _Reader, n: int) -> bytes:
    data = reader.read(n)
    if data is None or len(data) != n:
        raise _ClientGone("EOF inside message body")
    return data


def _read_body(reader: _Reader, head: _Head) -> bytes:
    """The raw body bytes (chunked framing kept as-is)."""
    if head.has_token("transfer-encoding", "chunked"):
        out = bytearray()
        while True:
            size_line = reader.readline(65536)
            if not size_line:
                raise _ClientGone("EOF in chunked body")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers up to the blank line
                    t = reader.readline(65536)
                    if not t:
                        raise _ClientGone("EOF in chunked trailer")
                    out += t
                    if t in (b"\r\n", b"\n"):
                        return bytes(out)
            out += _read_exact(reader, size + 2)
    cl = head.get("content-length")
    if cl:
        return _read_exact(reader, int(cl))
    return b""


class FaultProxy(LocalServer):
    """Threaded fault-injecting reverse proxy in front of ``upstream`` (``"host:port"``)."""

    def __init__(self, upstream: str, host: str = LOCALHOST, port: int = 0, upstream_timeout: float = 120.0) -> None:
        up_host, _, up_port = upstream.rpartition(":")
        self.upstream = (up_host, int(up_port))
        self.host = host
        self.port = port
        self.upstream_timeout = upstream_timeout
        self.rules: list[FaultRule] = []
        self.one_shots: deque[FaultRule] = deque()
        self.stats: Counter[str] = Counter()
        self.log: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._req_seq = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(128)
        self.port = ls.getsockname()[1]
        self._listener = ls
        self._stop.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        for t in threads:
            t.join(5)

    # -- configuration -----------------------------------------------------------------------------
    def add_rule(
        self,
        action: FaultAction,
        *,
        method: str | None = None,
        path: str | None = None,
        every_nth: int | None = None,
        rate: float | None = None,
        seed: int | None = None,
        times: int | None = None,
        after: int = 0,
        status: int = 503,
        code: str | None = None,
        message: str | None = None,
        seconds: float | None = None,
    ) -> FaultRule:
        """Add a standing rule (evaluated in insertion order, first firing rule wins)."""
        rule = FaultRule(
            Fault(action, status, code, message, seconds), method, path, every_nth, rate, seed, times, after
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def enqueue(
        self,
        action: FaultAction,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int = 503,
        code: str | None = None,
        message: str | None = None,
        seconds: float | None = None,
    ) -> FaultRule:
        """Queue a one-shot fault for the next request matching ``method``/``path``.

        Queued faults are consumed in order, before standing rules are looked at.
        """
        rule = FaultRule(Fault(action, status, code, message, seconds), method, path, times=1)
        with self._lock:
            self.one_shots.append(rule)
        return rule

    def clear(self) -> None:
        """Remove all rules and queued faults (counters are kept; see :meth:`reset_stats`)."""
        with self._lock:
            self.rules.clear()
            self.one_shots.clear()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()
            self.log.clear()

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return sum(v for k, v in self.stats.items() if k.startswith("fault:"))

    def injected(self, action: FaultAction) -> int:
        with self._lock:
            return self.stats[f"fault:{action}"]

    def _choose(self, method: str, target: str) -> Fault | None:
        with self._lock:
            self.stats["requests"] += 1
            for rule in list(self.one_shots):
                if rule.fires(method, target):
                    self.one_shots.remove(rule)
                    self.stats[f"fault:{rule.fault.action}"] += 1
                    return rule.fault
            for rule in self.rules:
                if rule.fires(method, target):
                    self.stats[f"fault:{rule.fault.action}"] += 1
                    return rule.fault
            return None

    def _record(
        self, method: str, target: str, fault: Fault | None, status: int | None, forwarded: bool = False
    ) -> None:
        with self._lock:
            self.log.append(ProxiedRequest(method, target, fault.action if fault else None, status))
            if forwarded:
                self.stats["forwarded"] += 1

    # -- serving -----------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            with self._lock:
                self._conns.add(conn)
                self._threads.add(t)
            t.start()

    def _serve_conn(self, conn: socket.socket) -> None:
        upstream: _Upstream | None = None
        reader = cast(_Reader, conn.makefile("rb", buffering=65536))
        try:
            while not self._stop.is_set():
                keep_going, upstream = self._one_exchange(conn, reader, upstream)
                if not keep_going:
                    break
        except (_ClientGone, OSError, ValueError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    def _one_exchange(
        self, conn: socket.socket, reader: _Reader, upstream: _Upstream | None
    ) -> tuple[bool, _Upstream | None]:
        raw_head = _read_head(reader)
        if raw_head is None:
            return False, upstream
        head = _Head(raw_head)
        parts = head.start_line.split(" ")
        method, target, version = parts[0], parts[1] if len(parts) > 1 else "/", parts[-1]
        client_keepalive = not head.has_token("connection", "close") and (
            version == "HTTP/1.1" or head.has_token("connection", "keep-alive")
        )
        fault = self._choose(method, target)
        expects_continue = head.has_token("expect", "100-continue")

        body = b""
        if fault is not None and fault.action in ("reset", "hang", "error") and expects_continue:
            # like a real server rejecting before the body: answer (or not) without reading it
            client_keepalive = False
        else:
            if expects_continue:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = _read_body(reader, head)

        if fault is not None:
            if fault.action == "error":
                self._record(method, target, fault, fault.status)
                self._send_error(conn, method, target, fault, client_keepalive)
                return client_keepalive, upstream
            if fault.action == "reset":
                self._record(method, target, fault, None)
                _rst(conn)
                return False, upstream
            if fault.action == "hang":
                self._record(method, target, fault, None)
                self._hang(conn, fault.duration)
                return False, upstream
            if fault.action == "delay":
                self._stop.wait(fault.duration)

        # forward
        try:
            resp_head, resp_body, upstream, upstream_keepalive = self._forward(upstream, raw_head, body, method)
        except _ClientGone:
            # upstream unreachable or died mid-response: the client sees its connection reset
            with self._lock:
                self.stats["upstream_errors"] += 1
            self._record(method, target, fault, None)
            _rst(conn)
            return False, None
        status = int(resp_head.start_line.split(" ")[1])
        if fault is not None and fault.action == "reset_after_upstream":
            self._record(method, target, fault, None)
            _rst(conn)
            return False, upstream
        if fault is not None and fault.action == "truncate":
            self._record(method, target, fault, status)
            conn.sendall(resp_head.raw + resp_body[: len(resp_body) // 2])
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)  # clean FIN: the client sees a short body
            return False, upstream
        # counted before relaying: a client that holds its answer always finds it counted
        self._record(method, target, fault, status, forwarded=True)
        conn.sendall(resp_head.raw + resp_body)
        if not upstream_keepalive and upstream is not None:
            upstream.close()
            upstream = None
        keep = client_keepalive and not resp_head.has_token("connection", "close") and _framed(resp_head, method)
        return keep, upstream

    def _forward(
        self, upstream: _Upstream | None, raw_head: bytes, body: bytes, method: str
    ) -> tuple[_Head, bytes, _Upstream | None, bool]:
        for attempt in (0, 1):
            reused = upstream is not None
            try:
                if upstream is None:
                    upstream = _Upstream(self.upstream, self.upstream_timeout)
                try:
                    upstream.sock.sendall(raw_head + body)
                except OSError as exc:
                    raise _UpstreamGone(f"send failed: {exc!r}", before_response=True) from None
                head, resp_body, keepalive = upstream.read_response(method)
                return head, resp_body, upstream, keepalive
            except (_UpstreamGone, OSError) as exc:
                if upstream is not None:
                    upstream.close()
                upstream = None
                # re-send once only when a kept-alive connection was found closed before any response
                # byte (the usual stale keep-alive race); never after a partial response
                stale = isinstance(exc, _UpstreamGone) and exc.before_response
                if not (reused and stale) or attempt == 1:
                    raise _ClientGone("upstream failed") from None
        raise AssertionError("unreachable")

    def _send_error(self, conn: socket.socket, method: str, target: str, fault: Fault, keepalive: bool) -> None:
        code, message = _S3_CODES.get(fault.status, ("InternalError", "Injected fault"))
        code = fault.code or code
        message = fault.message or message
        with self._lock:
            self._req_seq += 1
            request_id = f"FAULTPROXY{self._req_seq:08d}"
        body = s3_error_body(code, message, target.split("?")[0], request_id)
        reason = http.HTTPStatus(fault.status).phrase if fault.status in http.HTTPStatus._value2member_map_ else ""
        headers = [
            f"HTTP/1.1 {fault.status} {reason}",
            "Content-Type: application/xml",
            f"Content-Length: {0 if method == 'HEAD' else len(body)}",
            f"x-amz-request-id: {request_id}",
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}",
            "Server: faultproxy",
            f"Connection: {'keep-alive' if keepalive else 'close'}",
        ]
        if fault.status in (429, 503):
            headers.append("Retry-After: 1")
        out = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        conn.sendall(out if method == "HEAD" else out + body)

    def _hang(self, conn: socket.socket, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        conn.settimeout(0.1)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if conn.recv(65536) == b"":
                    return  # client gave up
            except TimeoutError:
                continue
            except OSError:
                return


def _framed(head: _Head, method: str) -> bool:
    """False for a response delimited by connection close (which then ends the client connection too)."""
    status = int(head.start_line.split(" ")[1])
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return True
    return head.has_token("transfer-encoding", "chunked") or head.get("content-length") is not None


def _rst(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()


class _Upstream:
    def __init__(self, addr: tuple[str, int], timeout: float) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = cast(_Reader, self.sock.makefile("rb", buffering=65536))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def read_response(self, method: str) -> tuple[_Head, bytes, bool]:
        """Read one full response: (head, raw body, upstream connection reusable)."""
        while True:
            try:
                raw = _read_head(self.reader)
            except _ClientGone as exc:
                raise _UpstreamGone(str(exc)) from None
            if raw is None:
                raise _UpstreamGone("upstream closed the connection", before_response=True)
            head = _Head(raw)
            status = int(head.start_line.split(" ")[1])
            if 100 <= status < 200 and status != 101:
                # interim responses: the proxy already answered ``Expect: 100-continue`` itself
                continue
            break
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif head.has_token("transfer-encoding", "chunked") or head.get("content-length") is not None:
            try:
                body = _read_body(self.reader, head)
            except _ClientGone as exc:
                raise _UpstreamGone(str(exc)) from None
        else:
            body = self.reader.read() or b""  # until close
            return head, body, False
        keepalive = not head.has_token("connection", "close") and not head.start_line.startswith("HTTP/1.0")
        return head, body, keepalive
