"""Routers point the world at the live generation: `local` (a symlink), `ingress`, `httproute`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapshot.routers.base import Router, RouterConflict, RouterError

if TYPE_CHECKING:
    from snapshot.settings import Settings

__all__ = ["Router", "RouterConflict", "RouterError", "open_router"]


def open_router(settings: Settings) -> Router:
    if settings.router == "local":
        from snapshot.routers.local import LocalRouter

        return LocalRouter(settings.data_dir)
    if settings.router == "ingress":
        from snapshot.routers.ingress import IngressRouter

        return IngressRouter.from_settings(settings)
    if settings.router == "httproute":
        from snapshot.routers.httproute import HTTPRouteRouter

        return HTTPRouteRouter.from_settings(settings)
    raise ValueError(f"router must be 'local', 'ingress' or 'httproute', got {settings.router!r}")
