"""File names of a generation and the public URLs they are served at.

Section names are `[a-z0-9_-]`, so a dot can never come from a section: numbered indexes (`sitemap.2.xml`)
and shard numbers cannot collide with another section's files.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SHARD_RE = re.compile(r"sitemap-([a-z0-9_-]{1,64})-(\d+)\.xml\.gz")
ROOT_INDEX = "sitemap.xml"


def shard_name(section: str, shard_no: int) -> str:
    return f"sitemap-{section}-{shard_no}.xml.gz"


def parse_shard_name(name: str) -> tuple[str, int] | None:
    m = SHARD_RE.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else None


def section_index_names(section: str, count: int) -> list[str]:
    if count == 1:
        return [f"sitemap-{section}.xml"]
    return [f"sitemap-{section}.{i}.xml" for i in range(1, count + 1)]


def root_index_names(count: int) -> list[str]:
    """`sitemap.xml`; past the index entry limit, numbered root indexes instead (nesting is not allowed)."""
    if count == 1:
        return [ROOT_INDEX]
    return [f"sitemap.{i}.xml" for i in range(1, count + 1)]


def is_root_index(name: str) -> bool:
    return name == ROOT_INDEX or re.fullmatch(r"sitemap\.\d+\.xml", name) is not None


def check_base_url(base_url: str) -> str:
    """The public URL the generation's files are served under, always ending in `/`."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"base URL must be an absolute http(s) URL like https://example.com/sitemaps/, "
                         f"got {base_url!r}")
    return base_url if base_url.endswith("/") else base_url + "/"
