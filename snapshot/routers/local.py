"""The local router: `<root>/current`, a symlink to the live generation's directory, replaced atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sitemap_keeper.snapshot.routers.base import Router, RouterConflict


class LocalRouter(Router):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.link = self.root / "current"

    def describe(self) -> str:
        return f"symlink:{self.link}"

    def current(self) -> str | None:
        try:
            target = os.readlink(self.link)
        except FileNotFoundError:
            return None
        return Path(target).name

    def switch(self, gen_id: str, expected: str | None) -> None:
        now = self.current()
        if now not in (expected, gen_id):  # gen_id: a retried switch that went through
            raise RouterConflict(f"{self.link} points at {now}, expected {expected}")
        # Relative, so the data directory can be moved whole. With the local store it is the generation's
        # directory; with another store the link is only a pointer (`serve` reads through the store).
        target = Path("generations") / gen_id
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".current.{secrets.token_hex(4)}"
        os.symlink(target, tmp)
        os.replace(tmp, self.link)  # rename(2) is atomic: readers see the old or the new, never neither
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
