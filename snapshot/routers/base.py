"""The router interface: which generation the world is served. Switching it is the moment of publishing."""

from __future__ import annotations

from abc import ABC, abstractmethod


class RouterError(RuntimeError):
    """The router cannot be read or switched; the message says which object or permission is missing."""


class RouterConflict(RouterError):
    """The router no longer points where we read it pointing (someone else switched it)."""


class Router(ABC):
    @abstractmethod
    def describe(self) -> str:
        """What this router is, for logs and `status`."""

    @abstractmethod
    def current(self) -> str | None:
        """The live generation's id, or None before the first publish."""

    @abstractmethod
    def switch(self, gen_id: str, expected: str | None) -> None:
        """Point at `gen_id` atomically, provided the router still points at `expected` (or already at
        `gen_id`: a retried switch that went through); else RouterConflict, and nothing changes."""
