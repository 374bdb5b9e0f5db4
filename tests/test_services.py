"""The test servers behave like the real thing for the real clients (minio, kafka-python, kubernetes,
kubectl), and their known deviations are pinned down here so a server upgrade that changes them is
noticed."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kafka import TopicPartition
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from tests.services.faultproxy import FaultProxy
from tests.services.kafka import TansuBroker, consume
from tests.services.kube import KubeAPIServer
from tests.services.ports import free_port
from tests.services.s3 import MotoS3Server, RcloneS3Server, S3Server

# ------------------------------------------------------------------------------------------------
# S3
# ------------------------------------------------------------------------------------------------


def test_minio_round_trip(s3_server: S3Server, s3_bucket: str) -> None:
    c = s3_server.client()
    assert c.bucket_exists(s3_bucket)
    assert not c.bucket_exists(s3_bucket + "-missing")

    body = b"<urlset/>" * 1000
    c.put_object(
        s3_bucket,
        "gen/0001/sitemap-1.xml",
        io.BytesIO(body),
        len(body),
        content_type="application/xml",
        metadata={"x-amz-meta-generation": "1"},
    )
    st = c.stat_object(s3_bucket, "gen/0001/sitemap-1.xml")
    assert st.size == len(body)
    assert st.content_type == "application/xml"
    assert st.metadata is not None and st.metadata["x-amz-meta-generation"] == "1"

    # server-side copy, metadata copied ...
    c.copy_object(s3_bucket, "live/sitemap-1.xml", CopySource(s3_bucket, "gen/0001/sitemap-1.xml"))
    assert s3_server.get_bytes(s3_bucket, "live/sitemap-1.xml") == body
    assert c.stat_object(s3_bucket, "live/sitemap-1.xml").content_type == "application/xml"
    # ... or replaced
    c.copy_object(
        s3_bucket,
        "live/index.xml",
        CopySource(s3_bucket, "gen/0001/sitemap-1.xml"),
        metadata={"Content-Type": "text/xml", "x-amz-meta-generation": "2"},
        metadata_directive=REPLACE,
    )
    st2 = c.stat_object(s3_bucket, "live/index.xml")
    assert st2.metadata is not None
    assert (st2.content_type, st2.metadata["x-amz-meta-generation"]) == ("text/xml", "2")

    assert s3_server.list_keys(s3_bucket) == [
        "gen/0001/sitemap-1.xml",
        "live/index.xml",
        "live/sitemap-1.xml",
    ]
    assert [o.object_name for o in c.list_objects(s3_bucket, prefix="live/")] == [
        "live/index.xml",
        "live/sitemap-1.xml",
    ]
    top = {(o.object_name, o.is_dir) for o in c.list_objects(s3_bucket)}
    assert top == {("gen/", True), ("live/", True)}

    with pytest.raises(S3Error) as ei:  # HEAD-based: S3Error on both servers
        c.stat_object(s3_bucket, "nope.xml")
    assert ei.value.code == "NoSuchKey"

    c.remove_object(s3_bucket, "live/index.xml")
    errors = list(
        c.remove_objects(s3_bucket, [DeleteObject("gen/0001/sitemap-1.xml"), DeleteObject("live/sitemap-1.xml")])
    )
    assert errors == []
    assert s3_server.list_keys(s3_bucket) == []
    c.remove_bucket(s3_bucket)
    assert not c.bucket_exists(s3_bucket)


def test_moto_bucket_policy(moto_s3: MotoS3Server) -> None:
    c = moto_s3.client()
    bucket = moto_s3.new_bucket("pol")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    c.set_bucket_policy(bucket, json.dumps(policy))
    assert json.loads(c.get_bucket_policy(bucket)) == policy
    c.delete_bucket_policy(bucket)
    with pytest.raises(S3Error) as ei:
        c.get_bucket_policy(bucket)
    assert ei.value.code == "NoSuchBucketPolicy"
    moto_s3.delete_bucket(bucket)


def test_rclone_bucket_policy_calls_are_misrouted(rclone_s3: RcloneS3Server) -> None:
    """rclone ignores ``?policy``: the calls become CreateBucket / ListObjects / DeleteBucket."""
    c = rclone_s3.client()
    bucket = rclone_s3.new_bucket("pol")
    rclone_s3.put_bytes(bucket, "k", b"v")
    with pytest.raises(InvalidResponseError, match="BucketAlreadyExists"):
        c.set_bucket_policy(bucket, "{}")
    assert "<ListBucketResult" in c.get_bucket_policy(bucket)
    with pytest.raises(InvalidResponseError, match="BucketNotEmpty"):
        c.delete_bucket_policy(bucket)
    rclone_s3.empty_bucket(bucket)
    c.delete_bucket_policy(bucket)  # == DeleteBucket on an empty bucket
    assert not c.bucket_exists(bucket)
    missing = rclone_s3.new_bucket("pol", create=False)
    c.set_bucket_policy(missing, "{}")  # == CreateBucket
    assert c.bucket_exists(missing)
    rclone_s3.delete_bucket(missing)


def test_signature_checking(s3_server: S3Server, s3_bucket: str) -> None:
    bad = s3_server.client(secret_key="x" * 40, retries=0)
    if s3_server.checks_signatures:
        with pytest.raises(InvalidResponseError, match="SignatureDoesNotMatch"):
            bad.list_objects(s3_bucket).__next__()
    else:  # moto serves any signature
        assert list(bad.list_objects(s3_bucket)) == []


def test_error_classes_differ_between_servers(s3_server: S3Server, s3_bucket: str) -> None:
    """GET of a missing key: S3Error on moto, InvalidResponseError (text/xml body) on rclone."""
    c = s3_server.client(retries=0)
    expected: type[Exception] = InvalidResponseError if s3_server.kind == "rclone" else S3Error
    with pytest.raises(expected, match="NoSuchKey"):
        c.get_object(s3_bucket, "missing")


# ------------------------------------------------------------------------------------------------
# fault proxy
# ------------------------------------------------------------------------------------------------


def test_proxy_passes_through_byte_exact(s3_server: S3Server, s3_bucket: str, s3_fault_proxy: FaultProxy) -> None:
    # signed for the proxy's Host; rclone verifies the signature, so this proves Host is relayed as sent
    c = s3_server.client(s3_fault_proxy.endpoint, retries=0)
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    c.put_object(s3_bucket, "a.bin", io.BytesIO(data), len(data))
    c.copy_object(s3_bucket, "b.bin", CopySource(s3_bucket, "a.bin"))
    resp = c.get_object(s3_bucket, "b.bin")
    assert resp.read() == data
    resp.release_conn()
    assert [o.object_name for o in c.list_objects(s3_bucket)] == ["a.bin", "b.bin"]
    assert s3_server.get_bytes(s3_bucket, "a.bin") == data  # really stored upstream
    assert c.stat_object(s3_bucket, "b.bin").size == len(data)  # HEAD: no body despite Content-Length
    assert c.bucket_exists(s3_bucket)
    assert list(c.remove_objects(s3_bucket, [DeleteObject("a.bin"), DeleteObject("b.bin")])) == []
    assert s3_server.list_keys(s3_bucket) == []
    assert s3_fault_proxy.faults_injected == 0
    assert s3_fault_proxy.stats["forwarded"] == s3_fault_proxy.stats["requests"] >= 8
    # put; copy_object = HEAD of the source + a server-side PUT (no GET of the data)
    first = [(r.method, r.target.split("?")[0], r.status) for r in s3_fault_proxy.log[:3]]
    assert first == [
        ("PUT", f"/{s3_bucket}/a.bin", 200),
        ("HEAD", f"/{s3_bucket}/a.bin", 200),
        ("PUT", f"/{s3_bucket}/b.bin", 200),
    ]


def test_proxy_injects_503_and_reset(s3_server: S3Server, s3_bucket: str, s3_fault_proxy: FaultProxy) -> None:
    c = s3_server.client(s3_fault_proxy.endpoint, retries=0)
    s3_fault_proxy.enqueue("error", method="PUT", path=r"/c\.xml$")
    with pytest.raises(S3Error) as ei:
        c.put_object(s3_bucket, "c.xml", io.BytesIO(b"x"), 1)
    assert (ei.value.code, ei.value.response.status) == ("SlowDown", 503)
    assert s3_server.list_keys(s3_bucket) == []  # never reached the server
    c.put_object(s3_bucket, "c.xml", io.BytesIO(b"x"), 1)  # one-shot: the next one passes

    s3_fault_proxy.enqueue("error", method="GET", status=500)
    with pytest.raises(S3Error, match="InternalError"):
        c.get_object(s3_bucket, "c.xml")

    s3_fault_proxy.enqueue("reset", method="GET")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        c.get_object(s3_bucket, "c.xml")

    s3_fault_proxy.enqueue("error", method="HEAD", status=503)  # HEAD: no body -> ServerError for 5xx
    with pytest.raises(ServerError) as se:
        c.stat_object(s3_bucket, "c.xml")
    assert se.value.status_code == 503

    # a request that happened upstream although the client saw a reset
    s3_fault_proxy.enqueue("reset_after_upstream", method="PUT")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        c.put_object(s3_bucket, "d.xml", io.BytesIO(b"y"), 1)
    assert s3_server.list_keys(s3_bucket) == ["c.xml", "d.xml"]

    # minio's default client retries single 5xx and resets transparently
    s3_fault_proxy.enqueue("reset", method="GET")
    s3_fault_proxy.enqueue("error", method="GET", status=503)
    resp = s3_server.client(s3_fault_proxy.endpoint).get_object(s3_bucket, "c.xml")
    assert resp.read() == b"x"
    resp.release_conn()

    assert s3_fault_proxy.injected("error") == 4
    assert s3_fault_proxy.injected("reset") == 2
    assert s3_fault_proxy.injected("reset_after_upstream") == 1
    assert s3_fault_proxy.faults_injected == 7


def test_proxy_rules_nth_rate_delay_hang_truncate(
    rclone_s3: RcloneS3Server, fault_proxy_factory: Callable[[str], FaultProxy]
) -> None:
    bucket = rclone_s3.new_bucket("rules")
    rclone_s3.put_bytes(bucket, "k", b"0123456789" * 1000)
    proxy = fault_proxy_factory(rclone_s3.endpoint)
    c = rclone_s3.client(proxy.endpoint, retries=0, timeout=0.5)

    def get() -> str:
        try:
            r = c.get_object(bucket, "k")
            data = r.read()
            r.release_conn()
            return "ok" if len(data) == 10000 else "short"
        except S3Error as e:
            return e.code or "?"
        except urllib3.exceptions.HTTPError as e:
            return type(e).__name__

    rule = proxy.add_rule("error", method="GET", every_nth=3, status=503)
    assert [get() for _ in range(6)] == ["ok", "ok", "SlowDown", "ok", "ok", "SlowDown"]
    assert (rule.matched, rule.injected) == (6, 2)
    proxy.clear()

    def pattern(seed: int) -> list[str]:
        proxy.clear()
        proxy.add_rule("error", method="GET", rate=0.5, seed=seed, status=500)
        return [get() for _ in range(8)]

    first = pattern(7)
    assert first == pattern(7)  # seeded: reproducible
    assert "ok" in first and "InternalError" in first
    proxy.clear()

    proxy.enqueue("delay", method="GET", seconds=0.3)
    t0 = time.monotonic()
    assert get() == "ok"
    assert time.monotonic() - t0 >= 0.3

    proxy.enqueue("hang", method="GET", seconds=10)
    t0 = time.monotonic()
    assert get() == "ReadTimeoutError"  # the client's 0.5 s read timeout
    assert time.monotonic() - t0 < 5

    proxy.enqueue("truncate", method="GET")
    assert get() == "ProtocolError"

    assert get() == "ok"
    rclone_s3.delete_bucket(bucket)


# ------------------------------------------------------------------------------------------------
# Kafka (Tansu)
# ------------------------------------------------------------------------------------------------


def test_kafka_produce_consume_commit(kafka_broker: TansuBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(3)
    values = [f"event-{i}".encode() for i in range(9)]
    keys = [f"site-{i % 4}".encode() for i in range(9)]
    md = kafka_broker.produce(topic, values, keys)
    per_partition: dict[int, int] = {}
    for m in md:
        per_partition[m.partition] = per_partition.get(m.partition, 0) + 1

    group = kafka_broker.unique_topic("group-")
    consumer = kafka_broker.consumer(topic, group_id=group)
    got = [(m.key, m.value) for m in consume(consumer, len(values))]
    assert sorted(got) == sorted(zip(keys, values, strict=True))
    consumer.commit()
    tps = [TopicPartition(topic, p) for p in range(3)]
    assert {tp.partition: consumer.committed(tp) for tp in tps} == {p: per_partition.get(p, 0) for p in range(3)}
    assert consumer.end_offsets(tps) == {tp: per_partition.get(tp.partition, 0) for tp in tps}
    consumer.close()

    # a new member of the group resumes from the committed offsets
    kafka_broker.produce(topic, [b"late"], [b"site-x"])
    again = kafka_broker.consumer(topic, group_id=group)
    assert [m.value for m in consume(again, 1)] == [b"late"]
    assert again.poll(timeout_ms=300) == {}  # nothing before the committed offsets is redelivered
    again.close()


def test_tansu_end_offsets_quirk_with_batches(kafka_broker: TansuBroker, new_topic: Callable[..., str]) -> None:
    """Tansu reports base offset of the last batch + 1 as high watermark (real Kafka: 5)."""
    topic = new_topic(1)
    producer = kafka_broker.producer(linger_ms=200)
    futures = [producer.send(topic, value=b"v%d" % i) for i in range(5)]
    producer.flush()
    assert [f.get(5).offset for f in futures] == [0, 1, 2, 3, 4]
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = kafka_broker.consumer()
    consumer.assign([tp])
    assert consumer.end_offsets([tp])[tp] == 1  # <- the quirk
    assert [m.offset for m in consume(consumer, 5)] == [0, 1, 2, 3, 4]  # but all records are fetched
    consumer.close()


def test_kafka_broker_kill_and_restart_same_port(fresh_kafka_broker: TansuBroker) -> None:
    broker = fresh_kafka_broker
    topic = broker.create_topic(partitions=1)
    broker.produce(topic, [b"before"])
    bootstrap = broker.bootstrap
    broker.kill()
    assert not broker.running
    broker.restart()
    assert broker.bootstrap == bootstrap
    admin = broker.admin()
    assert topic not in admin.list_topics()  # memory storage: everything is gone
    admin.close()
    broker.create_topic(topic, 1)
    assert broker.produce(topic, [b"after"])[0].offset == 0


# ------------------------------------------------------------------------------------------------
# Kubernetes API stand-in
# ------------------------------------------------------------------------------------------------


def _status(e: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(e.body)
    assert body["kind"] == "Status" and body["code"] == e.status
    return body


def test_kube_ingress_read_patch_conflict_404_403_422(kube_api: KubeAPIServer) -> None:
    kube_api.seed_ingress("sitemaps", "web", labels={"sitemaps/generation": "1"}, service="gen-1")
    api = k8s.NetworkingV1Api(kube_api.api_client())

    ing = api.read_namespaced_ingress("sitemaps", "web")
    rv = ing.metadata.resource_version
    assert ing.metadata.generation == 1
    assert ing.spec.rules[0].http.paths[0].backend.service.name == "gen-1"

    patched = api.patch_namespaced_ingress(
        "sitemaps",
        "web",
        {
            "metadata": {"labels": {"sitemaps/generation": "2"}, "resourceVersion": rv},
            "spec": {
                "rules": [
                    {
                        "host": "www.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/sitemaps",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "gen-2", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    )
    assert int(patched.metadata.resource_version) > int(rv)
    assert patched.metadata.generation == 2
    assert patched.metadata.labels == {"sitemaps/generation": "2"}
    last = kube_api.requests_for("PATCH")[-1]
    assert last.content_type == "application/strategic-merge-patch+json"  # what the client sends for a dict
    assert last.headers["authorization"] == "Bearer test-token"

    with pytest.raises(ApiException) as ei:  # stale resourceVersion
        api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"resourceVersion": rv, "labels": {"x": "y"}}})
    st = _status(ei.value)
    assert (ei.value.status, st["reason"]) == (409, "Conflict")
    assert "the object has been modified" in st["message"]

    with pytest.raises(ApiException) as ei:
        api.read_namespaced_ingress("missing", "web")
    st = _status(ei.value)
    assert (ei.value.status, st["reason"], st["message"]) == (
        404,
        "NotFound",
        'ingresses.networking.k8s.io "missing" not found',
    )

    with pytest.raises(ApiException) as ei:  # a JSON patch (what the client sends for a list): not served
        api.patch_namespaced_ingress(
            "sitemaps", "web", [{"op": "replace", "path": "/metadata/labels/sitemaps~1generation", "value": "3"}]
        )
    assert (ei.value.status, _status(ei.value)["reason"]) == (415, "UnsupportedMediaType")
    assert kube_api.requests_for("PATCH")[-1].content_type == "application/json-patch+json"

    kube_api.forbid("patch", "ingresses")
    with pytest.raises(ApiException) as ei:
        api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": {"a": "b"}}})
    st = _status(ei.value)
    assert (ei.value.status, st["reason"]) == (403, "Forbidden")
    assert st["message"] == (
        'ingresses.networking.k8s.io "sitemaps" is forbidden: User "system:serviceaccount:default:sitemaps" '
        'cannot patch resource "ingresses" in API group "networking.k8s.io" in the namespace "web"'
    )
    assert api.read_namespaced_ingress("sitemaps", "web").metadata.labels == {"sitemaps/generation": "2"}


def test_kube_replace_noop_and_concurrent_writer(kube_api: KubeAPIServer) -> None:
    kube_api.seed_ingress("sitemaps", "web")
    api = k8s.NetworkingV1Api(kube_api.api_client())
    ing = api.read_namespaced_ingress("sitemaps", "web")
    same = api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": None}})
    assert same.metadata.resource_version == ing.metadata.resource_version  # no-op write: no bump
    kube_api.modify(
        "networking.k8s.io/v1",
        "Ingress",
        "web",
        "sitemaps",
        lambda o: o["metadata"].setdefault("annotations", {}).update({"other": "writer"}),
    )
    ing.metadata.labels = {"mine": "1"}
    with pytest.raises(ApiException) as ei:
        api.replace_namespaced_ingress("sitemaps", "web", ing)
    assert ei.value.status == 409
    fresh = api.read_namespaced_ingress("sitemaps", "web")
    fresh.metadata.labels = {"mine": "1"}
    out = api.replace_namespaced_ingress("sitemaps", "web", fresh)
    assert out.metadata.labels == {"mine": "1"} and out.metadata.annotations == {"other": "writer"}
    assert out.metadata.generation == 1  # metadata-only change


def test_kube_forced_responses(kube_api: KubeAPIServer) -> None:
    kube_api.seed_ingress("sitemaps", "web")
    api = k8s.NetworkingV1Api(kube_api.api_client())
    kube_api.fail_next(500, method="PATCH", path="/ingresses/sitemaps$", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as ei:
            api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": {"a": "b"}}})
        assert (ei.value.status, _status(ei.value)["reason"]) == (500, "InternalError")
    kube_api.fail_next(409, method="PATCH", message="forced conflict")
    with pytest.raises(ApiException) as ei:
        api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": {"a": "b"}}})
    assert _status(ei.value)["reason"] == "Conflict"
    assert api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": {"a": "b"}}}).metadata.labels == {
        "a": "b"
    }
    assert [r.status for r in kube_api.requests_for("PATCH")] == [500, 500, 409, 200]


def test_kube_httproute_custom_objects(kube_api: KubeAPIServer) -> None:
    kube_api.seed_httproute("sitemaps", "web", service="gen-1")
    co = k8s.CustomObjectsApi(kube_api.api_client())
    args = ("gateway.networking.k8s.io", "v1", "web", "httproutes")
    route = co.get_namespaced_custom_object(*args, "sitemaps")
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "gen-1"
    rules = route["spec"]["rules"]
    rules[0]["backendRefs"][0]["name"] = "gen-2"
    out = co.patch_namespaced_custom_object(*args, "sitemaps", {"spec": {"rules": rules}})
    assert kube_api.requests_for("PATCH")[-1].content_type == "application/merge-patch+json"
    assert out["metadata"]["generation"] == 2
    assert kube_api.httproute("sitemaps", "web")["spec"]["rules"][0]["backendRefs"][0]["name"] == "gen-2"  # type: ignore[index]

    with pytest.raises(ApiException) as ei:  # CRDs: no strategic merge patch
        co.patch_namespaced_custom_object(
            *args,
            "sitemaps",
            {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert ei.value.status == 415
    stale = dict(route)
    with pytest.raises(ApiException) as ei:
        co.replace_namespaced_custom_object(*args, "sitemaps", stale)
    assert ei.value.status == 409
    del stale["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as ei:  # CRDs: PUT needs a resourceVersion
        co.replace_namespaced_custom_object(*args, "sitemaps", stale)
    assert (ei.value.status, _status(ei.value)["reason"]) == (422, "Invalid")
    items = co.list_namespaced_custom_object(*args)["items"]
    assert [i["metadata"]["name"] for i in items] == ["sitemaps"]


def test_kube_lease_for_leader_election(kube_api: KubeAPIServer) -> None:
    api = k8s.CoordinationV1Api(kube_api.api_client())
    lease = api.create_namespaced_lease(
        "web",
        k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name="sitemaps-leader"),
            spec=k8s.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=15),
        ),
    )
    assert lease.metadata.resource_version
    with pytest.raises(ApiException) as ei:
        api.create_namespaced_lease("web", k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="sitemaps-leader")))
    assert _status(ei.value)["reason"] == "AlreadyExists"
    lease.spec.holder_identity = "pod-b"
    taken = api.replace_namespaced_lease("sitemaps-leader", "web", lease)
    assert taken.spec.holder_identity == "pod-b"
    lease.spec.holder_identity = "pod-c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as ei:
        api.replace_namespaced_lease("sitemaps-leader", "web", lease)
    assert ei.value.status == 409
    assert kube_api.lease("sitemaps-leader", "web")["spec"]["holderIdentity"] == "pod-b"  # type: ignore[index]


def test_kube_load_kube_config(kube_api: KubeAPIServer, tmp_path: Any) -> None:
    kube_api.seed_ingress("sitemaps", "web", labels={"a": "1"})
    path = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace="web")
    api_client = k8s_config.new_client_from_config(config_file=str(path))
    ing = k8s.NetworkingV1Api(api_client).read_namespaced_ingress("sitemaps", "web")
    assert ing.metadata.labels == {"a": "1"}
    assert kube_api.requests[-1].headers["authorization"] == "Bearer test-token"
    bad = kube_api.kubeconfig(tmp_path / "bad", token="wrong")
    with pytest.raises(ApiException) as ei:
        k8s.NetworkingV1Api(k8s_config.new_client_from_config(config_file=str(bad))).read_namespaced_ingress(
            "sitemaps", "web"
        )
    assert ei.value.status == 401


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_reads_what_the_python_client_wrote(kube_api: KubeAPIServer) -> None:
    kube_api.seed_ingress("sitemaps", "web")
    kube_api.seed_httproute("sitemaps", "web")
    api = k8s.NetworkingV1Api(kube_api.api_client())
    api.patch_namespaced_ingress("sitemaps", "web", {"metadata": {"labels": {"sitemaps/generation": "7"}}})

    out = kube_api.kubectl("get", "ingress", "sitemaps", "-n", "web", "-o", "json")
    assert json.loads(out.stdout)["metadata"]["labels"] == {"sitemaps/generation": "7"}
    route = json.loads(kube_api.kubectl("get", "httproute", "sitemaps", "-n", "web", "-o", "json").stdout)
    assert route["kind"] == "HTTPRoute"

    kube_api.kubectl(
        "patch",
        "ingress",
        "sitemaps",
        "-n",
        "web",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"annotations":{"by":"kubectl"}}}',
    )
    assert api.read_namespaced_ingress("sitemaps", "web").metadata.annotations == {"by": "kubectl"}

    missing = kube_api.kubectl("get", "ingress", "nope", "-n", "web", check=False)
    assert missing.returncode != 0
    assert 'ingresses.networking.k8s.io "nope" not found' in missing.stderr
    kube_api.forbid("get", "httproutes")
    denied = kube_api.kubectl("get", "httproute", "sitemaps", "-n", "web", check=False)
    assert "Forbidden" in denied.stderr and "cannot get resource" in denied.stderr


def test_proxy_upstream_down_resets_client(fault_proxy_factory: Callable[[str], FaultProxy]) -> None:
    proxy = fault_proxy_factory(f"127.0.0.1:{free_port()}")  # nothing listens there
    http = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        http.request("GET", f"{proxy.url}/bucket/key")
    assert proxy.stats["upstream_errors"] == 1
    assert proxy.faults_injected == 0
