"""The store interface: where a generation's files live. One small module per backend, sharing this base."""

from __future__ import annotations

import builtins  # the Store.list method shadows the builtin in annotations
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from sitemap_keeper.snapshot.bounded import bounded_map

T = TypeVar("T")
R = TypeVar("R")

# A generation's stamp: an object holding the id of the site (manifest) that made it (snapshot/ownership.py).
# A dot name is never one of a generation's files, and `list` leaves it out.
STAMP = ".sitemaps-site"


class StoreError(RuntimeError):
    """The store refused or failed an operation; the message names it (never a secret)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    md5: str | None  # None where the store cannot tell cheaply


def content_type(name: str) -> str:
    if name.endswith(".gz"):
        return "application/gzip"
    if name.endswith(".xml"):
        return "application/xml"
    if name.endswith(".txt"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Store(ABC):
    """A place holding generations, each a flat set of named files, written once and then read-only."""

    #: how many puts or copies run at once (network stores benefit; local disk barely does)
    parallelism: int = 1

    @abstractmethod
    def describe(self) -> str:
        """Where this store is, for logs and `status`: never a secret."""

    @abstractmethod
    def create(self, gen_id: str) -> None:
        """Make the generation's container; creating one that exists is not an error."""

    @abstractmethod
    def put(self, gen_id: str, name: str, data: bytes) -> str:
        """Write a file completely (never half-visible); return its MD5."""

    @abstractmethod
    def copy(self, src_gen: str, dst_gen: str, name: str) -> None:
        """Bring a file unchanged from another generation by the cheapest means the store has."""

    @abstractmethod
    def list(self, gen_id: str) -> dict[str, ObjectInfo]:
        """Every file of a generation."""

    @abstractmethod
    def get(self, gen_id: str, name: str) -> bytes:
        """A file's bytes; FileNotFoundError when it is not there."""

    @abstractmethod
    def make_public(self, gen_id: str) -> None:
        """Let anyone read the generation's files (and nothing else) before the router points at it."""

    @abstractmethod
    def delete(self, gen_id: str) -> None:
        """Remove a generation and everything in it; a missing one is not an error."""

    @abstractmethod
    def generations(self) -> builtins.list[str]:
        """Ids of every generation container present, including half-built ones a crash left."""

    @abstractmethod
    def write_stamp(self, gen_id: str, site: str) -> None:
        """Stamp an existing generation with the id of the site that made it (whole, never half-written)."""

    @abstractmethod
    def read_stamp(self, gen_id: str) -> str | None:
        """The site id a generation is stamped with; None when it has no stamp or does not exist."""

    def seal(self, gen_id: str) -> None:  # noqa: B027 - optional hook
        """Make a generation durable before it is switched to (a no-op where writes already are)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> builtins.list[R]:
        """Run puts or copies in parallel where the store gains from it, taking items as they come: a stream
        of rendered shards is never all in memory at once (that grew with the site)."""
        if self.parallelism <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            return builtins.list(bounded_map(pool, fn, items, 2 * self.parallelism))  # enough to keep all busy
