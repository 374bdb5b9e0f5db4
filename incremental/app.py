"""Wiring: settings in, the manifest, store, router, publisher and applier out. Opened lazily, closed once."""

from __future__ import annotations

from functools import cached_property

from sitemap_keeper.incremental.apply import Applier, Parser
from sitemap_keeper.incremental.debezium import DebeziumParser
from sitemap_keeper.incremental.events import parse_events
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.snapshot.indexnow import Announcer
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.mapping import load_mapping
from sitemap_keeper.snapshot.publish import Publisher
from sitemap_keeper.snapshot.routers import Router, open_router
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.stores import Store, open_store


class App:
    def __init__(self, settings: Settings, read_only: bool = False) -> None:
        self.settings = ServiceSettings.of(settings)  # a one-shot command's: the service's at their defaults
        self.read_only = read_only  # the manifest must exist, and is never created or changed (NoManifest)

    @cached_property
    def manifest(self) -> Manifest:
        if self.read_only:
            return Manifest.open_existing(self.settings.manifest_url)
        if self.settings.storage == "local" or self.settings.database_url is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return Manifest.open(self.settings.manifest_url)

    @cached_property
    def store(self) -> Store:
        return open_store(self.settings)

    @cached_property
    def router(self) -> Router:
        return open_router(self.settings)

    @cached_property
    def publisher(self) -> Publisher:
        config = self.settings.indexnow
        return Publisher(
            self.manifest,
            self.store,
            self.router,
            self.settings.base_url,
            self.settings.limits,
            workers=self.settings.workers,
            on_switch=self.announcer,
            extra_files=config.key_file if config else None,
            max_shrink=self.settings.max_shrink,
        )

    @cached_property
    def announcer(self) -> Announcer:
        return Announcer(self.manifest, self.store, self.settings.indexnow, self.settings.workers)

    @cached_property
    def applier(self) -> Applier:
        return Applier(
            self.manifest, self.settings.rules, self.settings.limits, workers=self.settings.workers, parser=self.parser
        )

    @cached_property
    def parser(self) -> Parser:
        """Raw events to rows, in the configured format (Debezium's through the mapping)."""
        if self.settings.event_format != "debezium":
            return parse_events
        if self.settings.mapping is None:
            raise ValueError("the debezium event format needs a mapping file (SITEMAPS_MAPPING)")
        return DebeziumParser(load_mapping(self.settings.mapping))

    def close(self) -> None:
        if "applier" in self.__dict__:
            self.applier.close()  # its worker processes, if it started any
        if "announcer" in self.__dict__:
            self.announcer.close()  # before the manifest: it records what it did there
        if "manifest" in self.__dict__:
            self.manifest.close()
