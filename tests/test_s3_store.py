"""The S3 store against real servers (moto and `rclone serve s3`), read back with an independent client."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from minio.deleteobjects import DeleteError

from sitemap_keeper.snapshot import generation
from sitemap_keeper.snapshot.calls import Backoff
from sitemap_keeper.snapshot.layout import Layout
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores import open_store
from sitemap_keeper.snapshot.stores.base import ObjectInfo, StoreError, md5_hex
from sitemap_keeper.snapshot.stores.s3 import S3Store
from tests.services.faultproxy import FaultProxy
from tests.services.s3 import MotoS3Server, RcloneS3Server, S3Server

FAST = Backoff(attempts=4, base=0.01, cap=0.05)
G1, G2 = "20240101-000000-000-0001", "20240101-000001-000-0002"


def settings_for(server: S3Server, prefix: str, *, endpoint: str | None = None, **changes: object) -> Settings:
    return Settings(
        storage="s3",
        s3_endpoint=endpoint or server.endpoint,
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
        s3_secure=False,
        s3_region=server.region,
        bucket_prefix=prefix,
    ).replace(**changes)


def make_store(
    server: S3Server, prefix: str, endpoint: str | None = None, timeout: float = 60.0, **changes: object
) -> S3Store:
    return S3Store.from_settings(
        settings_for(server, prefix, endpoint=endpoint, **changes), backoff=FAST, timeout=timeout
    )


def cleanup(store: S3Store) -> None:
    for gen_id in store.generations():
        store.delete(gen_id)


@pytest.fixture
def prefix(s3_bucket_prefix: str) -> str:
    return s3_bucket_prefix.rstrip("-")


@pytest.fixture
def store(s3_server: S3Server, prefix: str) -> Iterator[S3Store]:
    s = make_store(s3_server, prefix)
    yield s
    cleanup(s)


def test_a_generation_is_a_bucket_of_typed_objects(s3_server: S3Server, store: S3Store, prefix: str) -> None:
    """The S3 side of the store contract (tests/contract/test_store_contract.py): bucket names and types."""
    assert isinstance(open_store(settings_for(s3_server, prefix)), S3Store)
    store.create(G1)
    store.put(G1, "sitemap-books-0.xml.gz", b"\x1f\x8b" + b"s" * 500)
    store.put(G1, "sitemap.xml", b"<sitemapindex/>")
    bucket = f"{prefix}-{G1}"
    c = s3_server.client()
    assert c.stat_object(bucket, "sitemap-books-0.xml.gz").content_type == "application/gzip"
    assert c.stat_object(bucket, "sitemap.xml").content_type == "application/xml"
    store.delete(G1)  # not empty: objects first, then the bucket
    assert not c.bucket_exists(bucket)
    assert store.describe() == f"s3:http://{s3_server.endpoint}/{prefix}-<generation>"


def test_copy_is_server_side(s3_server: S3Server, prefix: str, s3_fault_proxy: FaultProxy) -> None:
    store = make_store(s3_server, prefix, s3_fault_proxy.endpoint)
    try:
        store.create(G1)
        store.create(G2)
        names = [f"sitemap-s-{i}.xml.gz" for i in range(20)]
        store.map(lambda n: store.put(G1, n, n.encode() * 100), names)
        s3_fault_proxy.reset_stats()
        store.map(lambda n: store.copy(G1, G2, n), names)
        assert store.list(G2) == store.list(G1)
        assert s3_server.get_bytes(f"{prefix}-{G2}", names[3]) == names[3].encode() * 100
        methods = [(r.method, r.target.split("?")[0]) for r in s3_fault_proxy.log]
        assert not [m for m in methods if m[0] == "GET" and m[1].count("/") > 1]  # no object bytes read
        assert sum(1 for m, t in methods if m == "PUT" and t.startswith(f"/{prefix}-{G2}/")) == len(names)
    finally:
        cleanup(store)


def test_prefix_layout(s3_server: S3Server, prefix: str) -> None:
    bucket = f"{prefix}-one"
    store = make_store(s3_server, prefix, s3_layout="prefix", s3_bucket=bucket)
    try:
        for g in (G1, G2):
            store.create(g)
            store.put(g, "sitemap.xml", g.encode())
        assert s3_server.list_keys(bucket) == [f"generations/{g}/sitemap.xml" for g in (G1, G2)]
        store.delete(G1)
        assert s3_server.list_keys(bucket) == [f"generations/{G2}/sitemap.xml"]
        assert store.layout.path(G2) == f"/{bucket}/generations/{G2}"
        assert store.describe().endswith(f"/{bucket}/generations/<generation>/")
    finally:
        cleanup(store)
        s3_server.delete_bucket(bucket)


def test_bucket_names_are_valid_and_never_mixed_up(s3_server: S3Server, prefix: str) -> None:
    longest = "p" * 38
    name = Layout(longest).name(generation.new_id())
    assert len(name) == 63 and re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name)
    for bad in ("", "Sitemaps", "site_maps", "sitemaps-", "-s", "a.b", "p" * 39, "xn--x"):
        with pytest.raises(ValueError):
            Layout(bad)
    # Another deployment whose prefix extends ours: neither sees the other's generations.
    ours, theirs = make_store(s3_server, prefix), make_store(s3_server, prefix + "-staging")
    try:
        ours.create(G1)
        theirs.create(G2)
        s3_server.client().make_bucket(f"{prefix}-not-a-generation")
        assert ours.generations() == [G1]
        assert theirs.generations() == [G2]
    finally:
        cleanup(ours)
        cleanup(theirs)
        s3_server.delete_bucket(f"{prefix}-not-a-generation")


def test_public_read_policy(moto_s3: MotoS3Server, prefix: str) -> None:
    store = make_store(moto_s3, prefix)
    try:
        store.create(G1)
        store.put(G1, "sitemap.xml", b"<x/>")
        store.make_public(G1)
        bucket = f"{prefix}-{G1}"
        assert json.loads(moto_s3.client().get_bucket_policy(bucket)) == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicReadObjects",
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        with urllib.request.urlopen(f"{moto_s3.url}/{bucket}/sitemap.xml", timeout=10) as resp:  # anonymous
            assert resp.read() == b"<x/>"
    finally:
        cleanup(store)


def test_prefix_layout_policy_covers_generations_only(moto_s3: MotoS3Server, prefix: str) -> None:
    bucket = f"{prefix}-one"
    store = make_store(moto_s3, prefix, s3_layout="prefix", s3_bucket=bucket)
    try:
        store.create(G1)
        store.make_public(G1)
        (statement,) = json.loads(moto_s3.client().get_bucket_policy(bucket))["Statement"]
        assert statement["Action"] == ["s3:GetObject"]
        assert statement["Resource"] == [f"arn:aws:s3:::{bucket}/generations/*"]
    finally:
        cleanup(store)
        moto_s3.delete_bucket(bucket)


def test_server_without_bucket_policies_is_a_clear_error(rclone_s3: RcloneS3Server, prefix: str) -> None:
    store = make_store(rclone_s3, prefix)
    try:
        store.create(G1)
        store.put(G1, "sitemap.xml", b"<x/>")
        with pytest.raises(StoreError, match=r"refused the public-read policy.*S3_PUBLIC_READ=false"):
            store.make_public(G1)
        assert store.list(G1).keys() == {"sitemap.xml"}  # nothing harmed
        make_store(rclone_s3, prefix, s3_public_read=False).make_public(G1)  # an explicit opt-out
    finally:
        cleanup(store)


def test_a_policy_accepted_but_not_kept_is_an_error(
    moto_s3: MotoS3Server, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(moto_s3, prefix)
    try:
        store.create(G1)
        monkeypatch.setattr(store.client, "get_bucket_policy", lambda _b: "<ListBucketResult/>")
        with pytest.raises(StoreError, match="did not keep the public-read policy"):
            store.make_public(G1)
    finally:
        cleanup(store)


FAULTS: list[tuple[str, dict[str, object]]] = [
    ("error", {"method": "PUT", "status": 503}),
    ("error", {"method": "PUT", "status": 500}),
    ("reset", {"method": "PUT"}),
    ("reset_after_upstream", {"method": "PUT"}),  # it happened, but the client saw a reset
    ("error", {"method": "GET", "status": 503}),  # list
    ("truncate", {"method": "GET"}),
    ("error", {"method": "POST", "status": 503}),  # DeleteObjects
    ("reset_after_upstream", {"method": "DELETE"}),  # bucket removed, the client saw a reset
    ("error", {"method": "HEAD", "status": 502}),
]


@pytest.mark.parametrize(("action", "where"), FAULTS, ids=[f"{a}-{w['method']}" for a, w in FAULTS])
def test_transient_errors_are_retried(
    s3_server: S3Server, prefix: str, s3_fault_proxy: FaultProxy, action: str, where: dict[str, object]
) -> None:
    store = make_store(s3_server, prefix, s3_fault_proxy.endpoint)
    try:
        store.create(G1)
        store.put(G1, "a.xml", b"<a/>")
        s3_fault_proxy.add_rule(action, times=2, **where)  # type: ignore[arg-type]
        store.create(G2)
        store.put(G1, "b.xml", b"<b/>")
        store.copy(G1, G2, "a.xml")
        assert store.list(G1).keys() == {"a.xml", "b.xml"}
        assert store.get(G2, "a.xml") == b"<a/>"
        store.delete(G1)
        assert store.generations() == [G2]
        assert s3_fault_proxy.faults_injected == 2
    finally:
        s3_fault_proxy.clear()
        cleanup(store)


def test_a_hanging_server_times_out_and_is_retried(
    moto_s3: MotoS3Server, prefix: str, fault_proxy_factory: Callable[[str], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(moto_s3.endpoint)
    store = make_store(moto_s3, prefix, proxy.endpoint, timeout=0.5)
    try:
        store.create(G1)
        proxy.enqueue("hang", method="PUT", seconds=5)
        store.put(G1, "a.xml", b"<a/>")
        assert store.get(G1, "a.xml") == b"<a/>"
    finally:
        cleanup(store)


def test_persistent_errors_fail_clearly_without_secrets(
    s3_server: S3Server, prefix: str, s3_fault_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = make_store(s3_server, prefix, s3_fault_proxy.endpoint)
    try:
        store.create(G1)
        s3_fault_proxy.add_rule("error", method="PUT", status=503)
        with pytest.raises(StoreError, match=r"S3 put .*/a\.xml on .* failed: SlowDown \(503\)") as ei:
            store.put(G1, "a.xml", b"<a/>")
        assert s3_fault_proxy.injected("error") == FAST.attempts
        s3_fault_proxy.clear()
        s3_fault_proxy.reset_stats()
        s3_fault_proxy.add_rule("error", method="PUT", status=403)  # not transient: one try
        with pytest.raises(StoreError, match="AccessDenied"):
            store.put(G1, "a.xml", b"<a/>")
        assert s3_fault_proxy.injected("error") == 1
        assert s3_server.secret_key not in str(ei.value) + caplog.text + store.describe()
    finally:
        s3_fault_proxy.clear()
        cleanup(store)


def test_wrong_credentials_are_reported_without_the_secret(rclone_s3: RcloneS3Server, prefix: str) -> None:
    wrong = "W" * 40
    store = make_store(rclone_s3, prefix, s3_secret_key=wrong)
    with pytest.raises(StoreError) as ei:
        store.create(G1)
    assert "SignatureDoesNotMatch" in str(ei.value) or "AccessDenied" in str(ei.value)
    assert wrong not in str(ei.value)
    assert wrong not in repr(settings_for(rclone_s3, prefix, s3_secret_key=wrong))


def test_failed_deletes_are_reported(moto_s3: MotoS3Server, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(moto_s3, prefix)
    try:
        store.create(G1)
        store.put(G1, "a.xml", b"<a/>")

        def refuse(_bucket: str, objects: Iterator[object]) -> Iterator[DeleteError]:
            for _ in objects:
                yield DeleteError("AccessDenied", "no", "a.xml", None)

        monkeypatch.setattr(store.client, "remove_objects", refuse)
        with pytest.raises(StoreError, match=r"could not delete 1 objects.*a\.xml: AccessDenied"):
            store.delete(G1)
        monkeypatch.undo()
        assert store.generations() == [G1]
    finally:
        cleanup(store)


def test_settings_are_checked(moto_s3: MotoS3Server, prefix: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"s3_endpoint": None}, "SITEMAPS_S3_ENDPOINT"),
        ({"s3_endpoint": "http://x:9000"}, "host:port"),
        ({"s3_secret_key": None}, "both"),
        ({"s3_layout": "flat"}, "layout"),
        ({"bucket_prefix": "Bad_Prefix"}, "prefix"),
    ]
    for changes, message in cases:
        with pytest.raises(StoreError, match=message):
            S3Store.from_settings(settings_for(moto_s3, prefix, **changes))
    public = settings_for(moto_s3, prefix).public()
    assert public["s3_secret_key"] == "***" and public["s3_public_read"] is True


def test_unreachable_server(prefix: str) -> None:
    store = S3Store.from_settings(
        Settings(storage="s3", s3_endpoint="127.0.0.1:9", s3_secure=False, s3_region="us-east-1", bucket_prefix=prefix),
        backoff=FAST,
    )
    with pytest.raises(StoreError, match=r"failed: (NewConnectionError|MaxRetryError)"):
        store.generations()


def test_anonymous_reads_are_refused_without_policy_on_rclone(rclone_s3: RcloneS3Server, prefix: str) -> None:
    """What `s3_public_read=false` is for: a server that only serves signed requests (behind a proxy)."""
    store = make_store(rclone_s3, prefix)
    try:
        store.create(G1)
        store.put(G1, "a.xml", b"<a/>")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{rclone_s3.url}/{prefix}-{G1}/a.xml", timeout=10)
    finally:
        cleanup(store)


def test_etags_that_are_not_checksums(moto_s3: MotoS3Server, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encrypting servers (SSE-KMS) answer ETags that are not MD5s: sizes are verified, checksums not."""
    store = make_store(moto_s3, prefix)
    try:
        store.create(G1)
        assert store.list(G1) == {}
        real = store.client.put_object
        monkeypatch.setattr(
            store.client,
            "put_object",
            lambda *a, **kw: dataclasses.replace(real(*a, **kw), etag="0123456789abcdef0123456789abcdef"),
        )
        assert store.put(G1, "a.xml", b"<a/>") == md5_hex(b"<a/>")
        assert store.list(G1)["a.xml"] == ObjectInfo(4, None)
    finally:
        cleanup(store)
