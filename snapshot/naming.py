"""File names of a generation and the public URLs they are served at.

Section names are `[a-z0-9_-]`, so a dot can never come from a section: numbered indexes (`sitemap.2.xml`)
and shard numbers cannot collide with another section's files.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sitemap_keeper.snapshot.hosts import ascii_host

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


MAX_LOC = 2048  # an index's <loc>, per the sitemaps.org schema
# The longest name an index lists: a shard of a 64-character section numbered up to 10 digits.
MAX_LISTED_NAME = len(shard_name("s" * 64, 10**10 - 1))
# An absolute http(s) URI without credentials, query or fragment, in RFC 3986's characters only (its host in
# ASCII already: `check_base_url` turns an internationalised one into its IDNA form first).
BASE_URL_RE = re.compile(
    r"https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?"
    r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*)?"
)


def check_base_url(base_url: str) -> str:
    """The public URL the generation's files are served under, always ending in `/`, its host in IDNA form.

    Every index entry is this URL and a file name, so it must leave room for the longest name within the
    2,048 characters a sitemap index allows, and be an RFC 3986 URI itself."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"base URL must be an absolute http(s) URL like https://example.com/sitemaps/, got {_show(base_url)}"
        )
    if "@" in parts.netloc:  # not shown: it may hold a password
        raise ValueError("base URL must not carry credentials (user@ or user:password@)")
    name, _colon, port = parts.netloc.partition(":")
    if not name.startswith("[") and (not name.isascii() or "%" in name):
        base_url = base_url.replace(name, ascii_host(name), 1)
    if not base_url.endswith("/"):
        base_url += "/"
    if not BASE_URL_RE.fullmatch(base_url) or (port.isdigit() and int(port) > 65535):
        raise ValueError(
            f"base URL must be an RFC 3986 URI (percent-encode other characters; a port up to "
            f"65535), got {_show(base_url)}"
        )
    if len(base_url) + MAX_LISTED_NAME > MAX_LOC:
        raise ValueError(
            f"base URL is {len(base_url)} characters: with file names of up to {MAX_LISTED_NAME} "
            f"its index entries would pass the {MAX_LOC} characters a sitemap index allows; at most "
            f"{MAX_LOC - MAX_LISTED_NAME} allowed"
        )
    return base_url


def _show(value: str) -> str:
    return repr(value) if len(value) <= 120 else repr(value[:117] + "...")
