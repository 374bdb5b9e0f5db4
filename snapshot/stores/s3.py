"""The S3 store (MinIO, AWS or any S3 server), through the `minio` client.

Two layouts. `buckets` (the default): one bucket per generation, `<prefix>-<generation id>`, objects named
as the files. `prefix`: one bucket, each generation under `generations/<id>/`, for accounts where the
bucket count is limited. Unchanged files are copied server-side; every write is idempotent, so transient
errors (5xx, throttling, timeouts, resets) are retried whole, with exponential backoff and jitter.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from sitemap_keeper.snapshot import calls, generation
from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import GENERATIONS_DIR, Layout
from sitemap_keeper.snapshot.stores.base import STAMP, ObjectInfo, Store, StoreError, content_type, md5_hex

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Objects up to this size go up in one PUT, so their ETag is their MD5 and verify can check it.
SINGLE_PUT_BYTES = 256 * 1024 * 1024
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "OperationAborted",
        "BadGateway",
        "GatewayTimeout",
    }
)
MISSING_BUCKET = "NoSuchBucket"
MISSING_CODES = frozenset({"NoSuchKey", MISSING_BUCKET})
MD5_RE = re.compile(r"[0-9a-f]{32}")


def error_code(exc: BaseException) -> tuple[int | None, str | None]:
    """HTTP status and S3 error code, whichever form the client raised (rclone's text/xml errors are not
    parsed by minio: the code is in the body)."""
    if isinstance(exc, S3Error):
        return exc.response.status if exc.response is not None else None, exc.code
    if isinstance(exc, InvalidResponseError):
        m = re.search(r"<Code>([^<]+)</Code>", exc._body or "")
        return exc._code, m.group(1) if m else None
    if isinstance(exc, ServerError):
        return exc.status_code, None
    return None, None


def transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return True  # resets, timeouts, truncated bodies, refused connections
    status, code = error_code(exc)
    return (status is not None and (status >= 500 or status == 429)) or code in TRANSIENT_CODES


def brief(exc: BaseException) -> str:
    """A one-line description without URLs, headers or bodies beyond the S3 code and message."""
    status, code = error_code(exc)
    if isinstance(exc, S3Error):
        return f"{code} ({status}): {exc.message}"
    if code is not None or status is not None:
        return f"{code or 'error'} (HTTP {status})"
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return type(exc.reason).__name__
    return type(exc).__name__


class S3Store(Store):
    def __init__(
        self,
        client: Minio,
        endpoint: str,
        layout: Layout | None = None,
        *,
        secure: bool = False,
        region: str | None = None,
        public_read: bool = True,
        parallelism: int = 16,
        backoff: Backoff | None = None,
        secret: str | None = None,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.layout = layout or Layout()
        self.secure = secure
        self.region = region
        self.public_read = public_read
        self.parallelism = parallelism
        self.backoff = backoff or Backoff()
        self._secret = secret  # only to scrub it from messages, should a server ever echo it
        self.etags_are_md5: bool | None = None  # learnt from the first put: unknown is taken as yes

    @classmethod
    def from_settings(
        cls, settings: Settings, *, parallelism: int = 16, backoff: Backoff | None = None, timeout: float = 60.0
    ) -> S3Store:
        """The store the settings describe; a missing or malformed setting is a StoreError naming it."""
        try:
            endpoint = settings.s3_endpoint
            if not endpoint:
                raise ValueError("storage s3 needs SITEMAPS_S3_ENDPOINT (host:port)")
            if "/" in endpoint:
                raise ValueError(
                    f"SITEMAPS_S3_ENDPOINT is host:port, without scheme or path "
                    f"(SITEMAPS_S3_SECURE chooses https), got {endpoint!r}"
                )
            if bool(settings.s3_access_key) != bool(settings.s3_secret_key):
                raise ValueError("set both SITEMAPS_S3_ACCESS_KEY and SITEMAPS_S3_SECRET_KEY, or neither")
            layout = Layout.from_settings(settings)
            client = Minio(
                endpoint,
                access_key=settings.s3_access_key or None,
                secret_key=settings.s3_secret_key or None,
                secure=settings.s3_secure,
                region=settings.s3_region or None,
                http_client=http_client(parallelism, timeout),
            )
        except ValueError as exc:
            raise StoreError(f"S3 settings: {exc}") from None
        return cls(
            client,
            endpoint,
            layout,
            secure=settings.s3_secure,
            region=settings.s3_region or None,
            public_read=settings.s3_public_read,
            parallelism=parallelism,
            backoff=backoff,
            secret=settings.s3_secret_key,
        )

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"s3:{scheme}://{self.endpoint}/{self.layout.describe()}"

    # -- plumbing ----------------------------------------------------------------------------------------

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                result = fn()
                calls.record("s3", "ok")
                return result
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt >= self.backoff.attempts or not transient(exc):
                    calls.record("s3", "failed")
                    raise
                calls.record("s3", "retried")
                delay = self.backoff.delay(attempt)
                log.warning(
                    "S3 %s: %s; retry %d of %d in %.2fs", what, brief(exc), attempt, self.backoff.attempts - 1, delay
                )
                time.sleep(delay)
                attempt += 1

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Any client failure becomes a StoreError naming the operation; never a URL, header or secret."""
        try:
            yield
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            message = f"S3 {what} on {self.endpoint} failed: {brief(exc)}"
            if self._secret:
                message = message.replace(self._secret, "***")
            raise StoreError(message) from None

    def _where(self, gen_id: str, name: str = "") -> tuple[str, str]:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a file name: {name!r}")
        return self.layout.bucket_of(gen_id), self.layout.key_prefix(gen_id) + name

    def _keys(self, bucket: str, prefix: str) -> list[tuple[str, int, str | None]]:
        """(key, size, etag) of every object under `prefix`; [] when the bucket does not exist."""

        def listing() -> list[tuple[str, int, str | None]]:
            return [
                (str(o.object_name), int(o.size or 0), (o.etag or "").strip('"') or None)
                for o in self.client.list_objects(bucket, prefix=prefix or None, recursive=True)
            ]

        try:
            return self._retry(f"list {bucket}/{prefix}", listing)
        except MinioException as exc:
            if error_code(exc)[1] == MISSING_BUCKET:
                return []
            raise

    # -- the Store interface -----------------------------------------------------------------------------

    def create(self, gen_id: str) -> None:
        bucket = self.layout.bucket_of(gen_id)
        with self._errors(f"create bucket {bucket}"):
            if self._retry(f"check bucket {bucket}", lambda: self.client.bucket_exists(bucket)):
                return
            try:
                self._retry(f"create bucket {bucket}", lambda: self.client.make_bucket(bucket, self.region))
            except MinioException as exc:
                code = error_code(exc)[1]
                # A retried create whose first try went through; anything else is someone else's bucket.
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
                if not self.client.bucket_exists(bucket):
                    raise

    def put(self, gen_id: str, name: str, data: bytes) -> str:
        bucket, key = self._where(gen_id, name)
        md5 = md5_hex(data)
        with self._errors(f"put {bucket}/{key}"):
            result = self._retry(
                f"put {bucket}/{key}",
                lambda: self.client.put_object(
                    bucket,
                    key,
                    io.BytesIO(data),
                    len(data),
                    content_type=content_type(name),
                    part_size=SINGLE_PUT_BYTES,
                ),
            )
        etag = (result.etag or "").strip('"')
        if self.etags_are_md5 is not False and etag != md5:
            # Encrypting servers (SSE-KMS, SSE-C) answer ETags that are not the MD5: check sizes only.
            log.info("S3 ETags of %s are not MD5 checksums: verifying sizes only", self.endpoint)
        self.etags_are_md5 = self.etags_are_md5 is not False and etag == md5  # once not, never
        return md5

    def copy(self, src_gen: str, dst_gen: str, name: str) -> None:
        src_bucket, src_key = self._where(src_gen, name)
        bucket, key = self._where(dst_gen, name)
        # One CopyObject request. minio's copy_object first HEADs the source for its size (to switch to a
        # multipart copy past 5 GiB), doubling the requests of a publish for files that are never that big.
        headers: dict[str, str | list[str] | tuple[str]] = {**CopySource(src_bucket, src_key).gen_copy_headers()}

        def copy() -> None:
            resp = self.client._execute("PUT", bucket, key, headers=headers)
            if b"<Error>" in resp.data:  # S3 may fail a copy after its 200 OK, in the body
                raise S3Error.fromxml(resp)

        with self._errors(f"copy {src_bucket}/{src_key} to {bucket}/{key}"):
            self._retry(f"copy {src_bucket}/{src_key}", copy)

    def list(self, gen_id: str) -> dict[str, ObjectInfo]:
        bucket, prefix = self._where(gen_id)
        with self._errors(f"list {bucket}/{prefix}"):
            keys = self._keys(bucket, prefix)
        checksums = self.etags_are_md5 is not False

        def md5(etag: str | None) -> str | None:
            return etag if checksums and etag and MD5_RE.fullmatch(etag) else None

        return {
            key[len(prefix) :]: ObjectInfo(size, md5(etag))
            for key, size, etag in keys
            if not key[len(prefix) :].startswith(".")
        }  # the stamp is not one of the generation's files

    def get(self, gen_id: str, name: str) -> bytes:
        return self._get(*self._where(gen_id, name))

    def _get(self, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            resp = self.client.get_object(bucket, key)
            try:
                return bytes(resp.read())
            finally:
                resp.close()
                resp.release_conn()

        with self._errors(f"get {bucket}/{key}"):
            try:
                return self._retry(f"get {bucket}/{key}", read)
            except MinioException as exc:
                if error_code(exc)[1] in MISSING_CODES:
                    raise FileNotFoundError(f"{bucket}/{key}") from None
                raise

    def write_stamp(self, gen_id: str, site: str) -> None:
        bucket, key = self._where(gen_id)
        key += STAMP
        data = site.encode()
        with self._errors(f"stamp {bucket}/{key}"):
            self._retry(
                f"stamp {bucket}/{key}",
                lambda: self.client.put_object(
                    bucket, key, io.BytesIO(data), len(data), content_type=content_type(".txt")
                ),
            )

    def read_stamp(self, gen_id: str) -> str | None:
        bucket, key = self._where(gen_id)
        try:
            return self._get(bucket, key + STAMP).decode(errors="replace").strip()
        except FileNotFoundError:
            return None

    def policy(self, gen_id: str) -> dict[str, Any]:
        """Anyone may GET the generation's objects: no listing, no writes, nothing outside it."""
        bucket, prefix = self._where(gen_id)
        resource = f"arn:aws:s3:::{bucket}/{GENERATIONS_DIR}*" if prefix else f"arn:aws:s3:::{bucket}/*"
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicReadObjects",
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject"],
                    "Resource": [resource],
                }
            ],
        }

    def make_public(self, gen_id: str) -> None:
        bucket = self.layout.bucket_of(gen_id)
        if not self.public_read:
            log.info("public read of %s is left to the proxy in front of S3 (SITEMAPS_S3_PUBLIC_READ=false)", bucket)
            return
        policy = self.policy(gen_id)
        hint = (
            "a public-read bucket policy is required unless reads go through an authenticated proxy "
            "(then set SITEMAPS_S3_PUBLIC_READ=false)"
        )
        with self._errors(f"set the public-read policy of {bucket}"):
            try:
                self._retry(
                    f"set policy of {bucket}", lambda: self.client.set_bucket_policy(bucket, json.dumps(policy))
                )
            except MinioException as exc:
                if transient(exc):
                    raise
                raise StoreError(
                    f"S3 server {self.endpoint} refused the public-read policy of bucket "
                    f"{bucket} ({brief(exc)}): it may not support bucket policies (rclone serve "
                    f"s3 does not); {hint}"
                ) from None
            stored = self._retry(f"read policy of {bucket}", lambda: self.client.get_bucket_policy(bucket))
        if not _grants(stored, policy):
            raise StoreError(
                f"S3 server {self.endpoint} accepted but did not keep the public-read policy of "
                f"bucket {bucket}: it does not support bucket policies; {hint}"
            )

    def delete(self, gen_id: str) -> None:
        bucket, prefix = self._where(gen_id)
        with self._errors(f"delete {bucket}/{prefix}"):
            for _ in range(3):  # a write racing the delete leaves the bucket non-empty: go round again
                keys = [key for key, _size, _etag in self._keys(bucket, prefix)]
                stamp = prefix + STAMP  # removed last: a delete cut short leaves a generation that says whose
                for batch in ([k for k in keys if k != stamp], [k for k in keys if k == stamp]):
                    if batch:
                        self._remove(bucket, batch)
                if prefix:
                    return
                try:
                    self._retry(f"remove bucket {bucket}", lambda: self.client.remove_bucket(bucket))
                    return
                except MinioException as exc:
                    code = error_code(exc)[1]
                    if code == MISSING_BUCKET:
                        return  # gone, perhaps by our own retried request
                    if code != "BucketNotEmpty":
                        raise
        raise StoreError(f"S3 bucket {bucket} kept getting new objects while being deleted")

    def _remove(self, bucket: str, keys: builtins.list[str]) -> None:
        def remove() -> builtins.list[str]:
            # The iterator sends the batches as it is consumed, and yields the objects that failed.
            return [
                f"{e.name}: {e.code}"
                for e in self.client.remove_objects(bucket, (DeleteObject(k) for k in keys))
                if e.code != "NoSuchKey"
            ]

        failed = self._retry(f"remove objects of {bucket}", remove)
        if failed:
            raise StoreError(f"S3 could not delete {len(failed)} objects of {bucket}, first {failed[:3]}")

    def generations(self) -> builtins.list[str]:
        if self.layout.bucket is None:
            with self._errors("list buckets"):
                buckets = self._retry("list buckets", self.client.list_buckets)
            found = (self.layout.generation(b.name) for b in buckets)
        else:
            bucket = self.layout.bucket
            with self._errors(f"list {bucket}/{GENERATIONS_DIR}"):
                try:
                    objects = self._retry(
                        f"list {bucket}/{GENERATIONS_DIR}",
                        lambda: list(self.client.list_objects(bucket, prefix=GENERATIONS_DIR)),
                    )
                except MinioException as exc:
                    if error_code(exc)[1] != MISSING_BUCKET:
                        raise
                    objects = []
            found = (str(o.object_name)[len(GENERATIONS_DIR) :].rstrip("/") for o in objects if o.is_dir)
        return sorted(g for g in found if g and generation.is_id(g))


def _grants(stored: str, wanted: dict[str, Any]) -> bool:
    """Whether the policy read back grants what we set (servers normalise JSON: compare loosely)."""
    try:
        statements = json.loads(stored).get("Statement", [])
    except (ValueError, AttributeError):
        return False
    (want,) = wanted["Statement"]

    def as_list(value: object) -> list[object]:
        return value if isinstance(value, list) else [value]

    return any(
        isinstance(s, dict)
        and s.get("Effect") == "Allow"
        and "s3:GetObject" in as_list(s.get("Action"))
        and set(want["Resource"]) <= set(as_list(s.get("Resource")))
        for s in as_list(statements)
    )


def http_client(parallelism: int, timeout: float = 60.0) -> urllib3.PoolManager:
    """A connection per worker; no urllib3-level retries: S3Store retries whole operations itself."""
    return urllib3.PoolManager(
        maxsize=parallelism + 2, retries=False, timeout=urllib3.Timeout(connect=10.0, read=timeout)
    )
