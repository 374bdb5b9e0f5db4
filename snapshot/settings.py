"""Settings for every command: the CLI fills them from options, each also an environment variable SITEMAPS_*."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from snapshot.document import Rules
from snapshot.limits import MAX_BYTES, MAX_INDEX_ENTRIES, MAX_URLS, Limits
from snapshot.naming import check_base_url

DEFAULT_BASE_URL = "http://127.0.0.1:8080/sitemaps/"
SECRET_FIELDS = frozenset({"s3_secret_key", "kafka_sasl_password"})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("sitemaps-data")
    database_url: str | None = None
    base_url: str = DEFAULT_BASE_URL
    allowed_hosts: tuple[str, ...] = ()
    max_urls: int = MAX_URLS
    max_bytes: int = MAX_BYTES
    max_index_entries: int = MAX_INDEX_ENTRIES
    workers: int = 2
    storage: str = "local"
    router: str = "local"
    keep: int = 3
    # S3 / MinIO (storage=s3)
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_secure: bool = True
    s3_region: str | None = None
    bucket_prefix: str = "sitemaps"
    s3_layout: str = "buckets"  # "buckets": one bucket per generation; "prefix": one bucket, generations/<id>/
    s3_bucket: str | None = None  # the one bucket of the prefix layout
    # Kubernetes (router=ingress or httproute)
    kube_api: str | None = None
    ingress_namespace: str = "default"
    ingress_name: str = "sitemaps"
    ingress_label: str = "bucket"
    ingress_annotation: str = "nginx.ingress.kubernetes.io/rewrite-target"
    ingress_annotation_value: str = "/{bucket}/$2"
    httproute_name: str = "sitemaps"

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))
        self.limits  # noqa: B018 - fail early, with the message naming the bad limit

    @property
    def manifest_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'manifest.db').resolve()}"

    @property
    def limits(self) -> Limits:
        return Limits(self.max_urls, self.max_bytes, self.max_index_entries)

    @property
    def rules(self) -> Rules:
        hosts = self.allowed_hosts or (urlsplit(self.base_url).hostname or "",)
        return Rules(frozenset(h.lower() for h in hosts if h))

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The settings as shown in `status` and logs: secrets masked, passwords out of URLs."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***" if value else None
            elif f.name == "database_url":
                value = mask_url(self.manifest_url)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
