"""Where `sitemaps run` gets its events: Kafka, or a followed JSON-lines file. Both behave alike."""

from sitemap_keeper.incremental.sources.base import EventBatch, EventSource

__all__ = ["EventBatch", "EventSource"]
