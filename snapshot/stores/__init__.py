"""Stores hold generations: `local` (a directory tree) and `s3` (MinIO or any S3 server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sitemap_keeper.snapshot.stores.base import ObjectInfo, Store, StoreError, content_type

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

__all__ = ["ObjectInfo", "Store", "StoreError", "content_type", "open_store"]


def open_store(settings: Settings) -> Store:
    if settings.storage == "local":
        from sitemap_keeper.snapshot.stores.local import LocalStore

        return LocalStore(settings.data_dir)
    if settings.storage == "s3":
        from sitemap_keeper.snapshot.stores.s3 import S3Store

        return S3Store.from_settings(settings)
    raise ValueError(f"storage must be 'local' or 's3', got {settings.storage!r}")
