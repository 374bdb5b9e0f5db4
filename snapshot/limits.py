"""The sitemaps.org limits, configurable downward (tests use tiny shards to exercise many of them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sitemap_keeper.snapshot.document import Rules
from sitemap_keeper.snapshot.render import SHARD_OVERHEAD

MAX_URLS = 50_000
MAX_BYTES = 50 * 1024 * 1024  # 52,428,800 bytes uncompressed, per sitemaps.org
MAX_INDEX_ENTRIES = 50_000
MAX_SHRINK = 0.5  # the fraction of the site's URLs one rebuild or publish may remove, unless told otherwise


@dataclass(frozen=True, slots=True)
class Limits:
    max_urls: int = MAX_URLS
    max_bytes: int = MAX_BYTES
    max_index_entries: int = MAX_INDEX_ENTRIES

    def __post_init__(self) -> None:
        if not 1 <= self.max_urls <= MAX_URLS:
            raise ValueError(f"max URLs per shard must be from 1 to {MAX_URLS}, got {self.max_urls}")
        if not 4096 <= self.max_bytes <= MAX_BYTES:
            raise ValueError(f"max bytes per shard must be from 4096 to {MAX_BYTES}, got {self.max_bytes}")
        if not 1 <= self.max_index_entries <= MAX_INDEX_ENTRIES:
            raise ValueError(f"max index entries must be from 1 to {MAX_INDEX_ENTRIES}, got {self.max_index_entries}")

    def fits(self, url_count: int, byte_count: int, size: int) -> bool:
        """Whether one more URL of `size` bytes fits a shard holding `url_count` URLs in `byte_count` bytes."""
        return url_count < self.max_urls and byte_count + size + SHARD_OVERHEAD <= self.max_bytes

    def fitted(self, rules: Rules) -> Rules:
        """`rules` refusing a document whose `<url>` fragment no shard can hold: accepted, it would fail every
        publish of its shard. Whatever the manifest accepts, a shard can hold."""
        largest = self.max_bytes - SHARD_OVERHEAD
        if rules.max_size is not None and rules.max_size <= largest:
            return rules
        return dataclasses.replace(rules, max_size=largest)


def check_max_shrink(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"max shrink must be a fraction from 0 to 1, got {value}")
    return value


def shrinks_too_far(before: int, after: int, max_shrink: float) -> bool:
    """Whether going from `before` URLs to `after` removes more than the fraction `max_shrink` of them.

    A truncated source, a query that stopped early, a replay of a topic that no longer holds every document:
    each reads like a site that lost most of its documents, and publishing it takes their URLs out of search
    engines. A real site shrinks that much only on purpose.
    """
    return before > 0 and after < before * (1 - max_shrink)
