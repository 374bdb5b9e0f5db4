"""Routers point the world at the live generation: `local` (a symlink), `ingress`, `httproute`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sitemap_keeper.snapshot.routers.base import Router, RouterConflict, RouterError

if TYPE_CHECKING:
    from sitemap_keeper.snapshot.settings import Settings

__all__ = ["Router", "RouterConflict", "RouterError", "open_router"]


def open_router(settings: Settings) -> Router:
    if settings.router == "local":
        from sitemap_keeper.snapshot.routers.local import LocalRouter

        return LocalRouter(settings.data_dir)
    if settings.router == "ingress":
        from sitemap_keeper.snapshot.routers.ingress import IngressRouter

        return IngressRouter.from_settings(settings)
    if settings.router == "httproute":
        from sitemap_keeper.snapshot.routers.httproute import HTTPRouteRouter

        return HTTPRouteRouter.from_settings(settings)
    raise ValueError(f"router must be 'local', 'ingress' or 'httproute', got {settings.router!r}")
