"""Where a generation lives in S3, and the names the routers write for it: shared by the S3 store and the
Kubernetes routers, so neither imports the other (a router needs no S3 client)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sitemap_keeper.snapshot import generation

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

# A prefix leaves room for "-" and a 24-character generation id within S3's 63; no dots (they break TLS
# for virtual-host addressing), and neither of the reserved starts.
PREFIX_RE = re.compile(r"(?!xn--|sthree-)[a-z0-9](?:[a-z0-9-]{0,36}[a-z0-9])?")
BUCKET_RE = re.compile(r"(?!xn--|sthree-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
GENERATIONS_DIR = "generations/"


@dataclass(frozen=True)
class Layout:
    """Where a generation lives in S3, and the names routers use for it.

    `name(id)` = `<prefix>-<id>` is the bucket in the buckets layout and, in both layouts, the value the
    routers write into their label; `generation(name)` reads it back (None for a value that is not ours).
    """

    prefix: str = "sitemaps"
    bucket: str | None = None  # set: the prefix layout, everything in this one bucket

    def __post_init__(self) -> None:
        if not PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(
                f"bucket prefix must be 1-38 lowercase letters, digits or inner hyphens, got {self.prefix!r}"
            )
        if self.bucket is not None and not BUCKET_RE.fullmatch(self.bucket):
            raise ValueError(f"not a valid S3 bucket name: {self.bucket!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Layout:
        if settings.s3_layout not in ("buckets", "prefix"):
            raise ValueError(f"S3 layout must be 'buckets' or 'prefix', got {settings.s3_layout!r}")
        if settings.s3_layout == "buckets":
            return cls(settings.bucket_prefix)
        return cls(settings.bucket_prefix, settings.s3_bucket or settings.bucket_prefix)

    def name(self, gen_id: str) -> str:
        return f"{self.prefix}-{gen_id}"

    def generation(self, name: str | None) -> str | None:
        if name is None or not name.startswith(self.prefix + "-"):
            return None
        gen_id = name[len(self.prefix) + 1 :]
        return gen_id if generation.is_id(gen_id) else None

    def bucket_of(self, gen_id: str) -> str:
        return self.bucket or self.name(gen_id)

    def key_prefix(self, gen_id: str) -> str:
        return f"{GENERATIONS_DIR}{gen_id}/" if self.bucket else ""

    def path(self, gen_id: str) -> str:
        """The generation's objects, path-style, no trailing slash: `/<bucket>[/generations/<id>]`."""
        return f"/{self.bucket_of(gen_id)}/{self.key_prefix(gen_id)}".rstrip("/")

    def placeholders(self, gen_id: str) -> dict[str, str]:
        """What router templates may use: {bucket}, {generation}, {path}."""
        return {"bucket": self.bucket_of(gen_id), "generation": gen_id, "path": self.path(gen_id)}

    def describe(self) -> str:
        if self.bucket:
            return f"{self.bucket}/{GENERATIONS_DIR}<generation>/"
        return f"{self.prefix}-<generation>"
