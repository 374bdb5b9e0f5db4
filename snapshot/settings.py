"""The settings of the one-shot commands (rebuild, publish, prune, ...): the site, its limits, the store, the router
and IndexNow. The CLI fills them from options, each also an environment variable SITEMAPS_* (the option groups of
incremental/cli/options.py take their defaults from here). The change-feed service's own settings (Kafka, timers,
probes, leader election) extend these in incremental/settings.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.hosts import ascii_host
from sitemap_keeper.snapshot.limits import MAX_BYTES, MAX_INDEX_ENTRIES, MAX_SHRINK, MAX_URLS, Limits, check_max_shrink
from sitemap_keeper.snapshot.naming import check_base_url

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.indexnow import IndexNowConfig

DEFAULT_BASE_URL = "http://127.0.0.1:8080/sitemaps/"
SECRET = {"secret": True}  # field metadata: masked by `public()`, never shown nor logged


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
    max_shrink: float = MAX_SHRINK  # of the live site's URLs, in one rebuild or publish
    # S3 / MinIO (storage=s3)
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False, metadata=SECRET)
    s3_secure: bool = True
    s3_region: str | None = None
    bucket_prefix: str = "sitemaps"
    s3_layout: str = "buckets"  # "buckets": one bucket per generation; "prefix": one bucket, generations/<id>/
    s3_bucket: str | None = None  # the one bucket of the prefix layout
    # Kubernetes (router=ingress or httproute)
    kube_api: str | None = None
    router_namespace: str = "default"
    ingress_name: str = "sitemaps"
    router_label: str = "bucket"
    ingress_annotation: str = "nginx.ingress.kubernetes.io/rewrite-target"
    ingress_annotation_value: str = "/{bucket}/$2"
    httproute_name: str = "sitemaps"
    # false: no public-read bucket policy, for buckets read through an authenticated proxy or CDN
    s3_public_read: bool = True
    # IndexNow (off without a key): see snapshot/indexnow.py
    indexnow_key: str | None = None
    indexnow_endpoints: tuple[str, ...] = ()  # default https://api.indexnow.org/indexnow
    indexnow_key_location: str | None = None  # default {scheme}://{host}/{key}.txt, per submitted host
    indexnow_timeout: float = 45.0  # within the pods' 60 s termination grace period
    # A document or event field this version does not know: "reject" (dead-lettered, naming it) or "ignore"
    extra_fields: str = "reject"

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))
        self.limits  # noqa: B018 - fail early, with the message naming the bad limit
        self.rules  # noqa: B018 - likewise for an allowed host that is no valid host name
        check_max_shrink(self.max_shrink)
        if self.extra_fields not in ("reject", "ignore"):
            raise ValueError(f"extra_fields must be 'reject' or 'ignore', got {self.extra_fields!r}")
        self.indexnow  # noqa: B018 - likewise for a bad IndexNow key or endpoint

    @property
    def manifest_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'manifest.db').resolve()}"

    @property
    def limits(self) -> Limits:
        return Limits(self.max_urls, self.max_bytes, self.max_index_entries)

    @property
    def indexnow(self) -> IndexNowConfig | None:
        from sitemap_keeper.snapshot.indexnow import IndexNowConfig  # not at import time: it needs SQLAlchemy

        return IndexNowConfig.from_settings(
            self.indexnow_key, self.indexnow_endpoints, self.indexnow_key_location, self.indexnow_timeout
        )

    @property
    def rules(self) -> Rules:
        hosts = self.allowed_hosts or (urlsplit(self.base_url).hostname or "",)
        return Rules(
            frozenset(ascii_host(h) for h in hosts if h),  # as document URLs are compared: IDNA
            ignore_extra_fields=self.extra_fields == "ignore",
        )

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    def replace(self, **changes: object) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The settings as shown in `status` and logs: secrets masked, passwords out of URLs."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else None
            elif f.name == "database_url":
                value = mask_url(self.manifest_url)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
