"""A synthetic catalog and change stream, for the demo and the benchmarks (deterministic for a seed)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

SECTIONS = ("books", "authors", "series", "articles")
HOST = "librer.io"


def document(i: int, version: int = 1, day: int = 0, host: str = HOST) -> dict[str, Any]:
    section = SECTIONS[i % len(SECTIONS)]
    doc: dict[str, Any] = {
        "section": section,
        "key": str(i),
        "loc": f"https://{host}/{section}/{i}",
        "lastmod": f"2024-{1 + (i + day) % 12:02d}-{1 + (i * 7 + day) % 28:02d}T10:{i % 60:02d}:00+00:00",
        "changefreq": "weekly",
        "priority": 0.5,
        "version": version,
    }
    if section == "books":
        doc["images"] = [{"loc": f"https://{host}/i/{i}.jpg", "title": f"Cover of book {i} & more"}]
        doc["alternates"] = [{"hreflang": "de", "href": f"https://{host}/de/{section}/{i}"}]
    return doc


def catalog(n: int, host: str = HOST) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield document(i, host=host)


def write_catalog(path: Path, n: int) -> Path:
    """The catalog as a JSON-lines file, a rebuild's source: written under another name, then renamed."""
    part = path.with_name(path.name + ".part")
    with part.open("wb") as f:
        for d in catalog(n):
            f.write(orjson.dumps(d) + b"\n")
    return part.rename(path)


def changes(n: int, catalog_size: int, seed: int = 1, host: str = HOST) -> Iterator[bytes]:
    """n events: mostly updates of existing documents, some new ones, some deletions (versions increase)."""
    rnd = random.Random(seed)
    next_new = catalog_size
    for step in range(n):
        roll = rnd.random()
        version = 2 + step
        if roll < 0.1:
            yield orjson.dumps(document(next_new, version, host=host))
            next_new += 1
        elif roll < 0.15:
            i = rnd.randrange(catalog_size)
            yield orjson.dumps(
                {"op": "delete", "section": SECTIONS[i % len(SECTIONS)], "key": str(i), "version": version}
            )
        else:
            yield orjson.dumps(
                {"op": "upsert", **document(rnd.randrange(catalog_size), version, day=step + 1, host=host)}
            )
