"""What a crawler is served right now, read over HTTP file by file, and how far it is from the ground truth."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

from lxml import etree

from sitemap_keeper.snapshot import naming
from sitemap_keeper.snapshot.news import parse_news_name
from tests.support import NS, read_site, validate

# fetch(name) -> (body, the generation it came from)
Fetch = Callable[[str], tuple[bytes, str]]


class Switched(Exception):
    """The router switched while the site was being read: the read mixed two generations; read again."""


@dataclass(slots=True)
class Observation:
    generation: str
    urls: dict[str, str | None] | None  # None: the live generation is not complete and valid; news: NEWS + loc
    broken: str = ""  # why not
    duplicated: int = 0  # URLs listed more than once


@dataclass(slots=True)
class Tally:
    """Differences between what was served and the closest allowed truth, summed over observations."""

    observations: int = 0
    lost: int = 0  # in the truth, not served
    duplicated: int = 0
    stale: int = 0  # served with another lastmod than the truth's
    extra: int = 0  # served, not in the truth (deleted, or a document's old URL)
    broken: int = 0  # observations of a live generation that was incomplete or invalid

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def violations(self) -> int:
        return self.lost + self.duplicated + self.stale + self.extra + self.broken


def observe(fetch: Fetch, base_url: str) -> Observation:
    """Read the live generation as a crawler would, validating every file (root, shards, section indexes)."""
    bodies: dict[str, bytes] = {}
    generations: set[str] = set()

    def get(name: str) -> bytes:
        bodies[name], gen = fetch(name)
        generations.add(gen)
        return bodies[name]

    try:
        site = read_site(get, base_url)
        _check_section_indexes(get, site.files, base_url)
    except Exception as exc:  # a 404, invalid XML, a wrong index lastmod, a URL listed twice: all broken
        if len(generations) > 1:
            raise Switched from exc
        return Observation(
            next(iter(generations), "?"), None, f"{type(exc).__name__}: {exc}"[:500], _duplicates(bodies)
        )
    if len(generations) > 1:
        raise Switched
    return Observation(generations.pop(), {**site.urls, **{NEWS + loc: title for loc, title in site.news.items()}})


NEWS = "news "  # an article of the news files, in an observation: NEWS + loc -> its title


def _check_section_indexes(get: Callable[[str], bytes], files: dict[str, bytes], base_url: str) -> None:
    """Each section's index is valid and lists exactly that section's shards of the root index."""
    by_section: dict[str, set[str]] = {}
    for name in files:
        parsed = naming.parse_shard_name(name) or parse_news_name(name)
        if parsed is not None:
            by_section.setdefault(parsed[0], set()).add(base_url + name)
    for section, shards in by_section.items():
        (index_name,) = naming.section_index_names(section, 1)
        index = validate(index_name, get(index_name))
        listed = {e.text for e in index.iter(f"{{{NS['sm']}}}loc")}
        assert listed == shards, f"{index_name} lists {sorted(listed ^ shards)[:3]}... unlike the root index"


def _duplicates(bodies: dict[str, bytes]) -> int:
    """URLs listed more than once across the shards read (read_site stops at the first)."""
    seen: Counter[str] = Counter()
    for name, body in bodies.items():
        if naming.parse_shard_name(name) is None:
            continue
        try:
            root = etree.fromstring(gzip.decompress(body))
        except (OSError, etree.XMLSyntaxError):
            continue
        seen.update(e.text or "" for e in root.iterfind("sm:url/sm:loc", NS))
    return sum(n - 1 for n in seen.values() if n > 1)


def compare(seen: Observation, allowed: Sequence[Mapping[str, str | None]]) -> tuple[Tally, int]:
    """The differences against the closest of the allowed truths, and its index (-1 when broken)."""
    if seen.urls is None:
        return Tally(observations=1, broken=1, duplicated=seen.duplicated), -1
    served = seen.urls
    tallies = []
    for truth in allowed:
        common = served.keys() & truth.keys()
        tallies.append(
            Tally(
                observations=1,
                lost=len(truth.keys() - served.keys()),
                extra=len(served.keys() - truth.keys()),
                stale=sum(served[u] != truth[u] for u in common),
            )
        )
    best = min(range(len(tallies)), key=lambda i: tallies[i].violations)
    return tallies[best], best
