"""Which generations in a store are this site's: the manifest's identity, and the stamp every generation carries.

Two sites (staging and production, two sites of one company) may share one S3 server and bucket prefix, one
prefix-layout bucket or one local data directory. Every manifest therefore has an identity, the site id (a
random number made once, kept in its `sitemaps_meta` table: a rebuild or a replay keeps it), and every
generation it makes is stamped with it (the store's STAMP object). Prune and rollback touch only generations
stamped with their own site id; one stamped by another site, or unstamped and never recorded by this manifest,
is reported and left alone.

A generation this manifest recorded that has no stamp is this site's all the same: one published before stamps
existed, or one a crash left between creating its container and stamping it. It is stamped when first met
(adopted), so an existing store is taken over without downtime. A manifest copied from another site's (a
restored dump) shares its identity and so its generations: that is the one case a stamp cannot tell apart.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.stores.base import Store, StoreError


def site_id(manifest: Manifest) -> str:
    """This manifest's identity, 16 hex digits; made (once, whoever asks first) on first use."""
    return f"{manifest.site_id(lambda: secrets.randbelow(2**63 - 1) + 1):016x}"


@dataclass(frozen=True, slots=True)
class Foreign:
    """A generation in the store that is not this site's: stamped by another site, or unstamped and unknown."""

    id: str
    stamp: str | None

    def __str__(self) -> str:
        return f"{self.id} ({f'site {self.stamp[:40]}' if self.stamp is not None else 'unstamped'})"


class Owner:
    """This site's claim on the generations of a store."""

    def __init__(self, site: str, store: Store, recorded: Iterable[str]) -> None:
        self.site = site
        self.store = store
        self.recorded = set(recorded)  # every generation id this manifest ever began

    @classmethod
    def of(cls, manifest: Manifest, store: Store) -> Owner:
        return cls(site_id(manifest), store, (g.id for g in manifest.generations.all()))

    def claim(self, gen_id: str) -> Foreign | None:
        """None when the generation is this site's (stamping it if it was recorded here but never stamped);
        otherwise what it is, to report and leave alone."""
        stamp = self.store.read_stamp(gen_id)
        if stamp == self.site:
            return None
        if stamp is None and gen_id in self.recorded:
            self.store.write_stamp(gen_id, self.site)  # adopted
            return None
        return Foreign(gen_id, stamp)


def create(store: Store, site: str, gen_id: str) -> None:
    """Create a new generation's container, stamped as this site's; never write into another site's."""
    stamp = store.read_stamp(gen_id)
    if stamp is not None and stamp != site:
        raise StoreError(
            f"generation {gen_id} already exists in {store.describe()}, stamped by site {stamp[:40]}: "
            "not writing into another site's generation"
        )
    store.create(gen_id)
    store.write_stamp(gen_id, site)
