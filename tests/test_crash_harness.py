"""The crash harness (tests/harness/crash.py), small: a few kill -9 points per configuration. The full run,
100 points per configuration: SITEMAPS_FULL_HARNESS=1 (or `python -m tests.harness.crash`); another seed:
SITEMAPS_CRASH_SEED."""

from __future__ import annotations

import gzip
import os
import urllib.error
from email.message import Message

import pytest

from tests.harness import crash as harness
from tests.harness.crash import CONFIGS, PHASES, run_config, table
from tests.harness.deployments import BASE
from tests.harness.served import Fetch, Observation, compare, observe

FULL = os.environ.get("SITEMAPS_FULL_HARNESS") == "1"
POINTS, CATALOG = (100, harness.CATALOG) if FULL else (3, 600)  # by default one point in each phase
SEED = int(os.environ.get("SITEMAPS_CRASH_SEED", "1"))


@pytest.mark.parametrize("config", CONFIGS)
def test_kill_9_at_random_points(config: str) -> None:
    result = run_config(config, SEED, POINTS, catalog=CATALOG)
    print(table([result]))
    assert not result.failures, "\n".join(result.failures)
    assert result.kills == POINTS
    assert all(result.rows[p].tally.observations for p in PHASES)
    assert sum(r.tally.violations + r.leftovers for r in result.rows.values()) == 0


# -- the harness's own checks can fail ----------------------------------------------------------------------

URLSET = '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{}</urlset>'
INDEX = (
    '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    "{}</sitemapindex>"
)


def site(shards: dict[str, list[str]]) -> dict[str, bytes]:
    """A tiny served site: one section, `books`, with these shards and URLs (lastmod 2024-07-01)."""
    files = {}
    entries = "".join(f"<sitemap><loc>{BASE}{name}</loc><lastmod>2024-07-01</lastmod></sitemap>" for name in shards)
    files["sitemap.xml"] = files["sitemap-books.xml"] = INDEX.format(entries).encode()
    for name, urls in shards.items():
        body = "".join(f"<url><loc>{u}</loc><lastmod>2024-07-01</lastmod></url>" for u in urls)
        files[name] = gzip.compress(URLSET.format(body).encode())
    return files


def fetch_from(files: dict[str, bytes]) -> Fetch:
    def fetch(name: str) -> tuple[bytes, str]:
        if name not in files:
            raise urllib.error.HTTPError(BASE + name, 404, "Not Found", Message(), None)
        return files[name], "g1"

    return fetch


def test_observe_sees_broken_and_duplicated_sites() -> None:
    a, b = "https://librer.io/books/1", "https://librer.io/books/2"
    good = observe(fetch_from(site({"sitemap-books-1.xml.gz": [a], "sitemap-books-2.xml.gz": [b]})), BASE)
    assert good.urls == {a: "2024-07-01", b: "2024-07-01"} and good.generation == "g1"
    twice = observe(fetch_from(site({"sitemap-books-1.xml.gz": [a, b], "sitemap-books-2.xml.gz": [b]})), BASE)
    assert twice.urls is None and twice.duplicated == 1
    files = site({"sitemap-books-1.xml.gz": [a], "sitemap-books-2.xml.gz": [b]})
    del files["sitemap-books-2.xml.gz"]
    missing = observe(fetch_from(files), BASE)
    assert missing.urls is None and "404" in missing.broken
    files = site({"sitemap-books-1.xml.gz": [a]})
    files["sitemap-books.xml"] = INDEX.format("").encode()
    assert observe(fetch_from(files), BASE).urls is None  # a section index disagrees


def test_compare_counts_each_difference_against_the_closest_truth() -> None:
    served = Observation("g", {"a": "1", "b": "2", "c": "3"})
    before, after = {"a": "1", "b": "1", "d": "1"}, {"a": "1", "b": "2", "c": "3"}
    tally, best = compare(served, [before, after])
    assert best == 1 and tally.violations == 0
    tally, best = compare(served, [before])
    assert (tally.lost, tally.stale, tally.extra, tally.broken) == (1, 1, 1, 0) and best == 0
    tally, best = compare(Observation("g", None, "404", duplicated=2), [after])
    assert (tally.broken, tally.duplicated, best) == (1, 2, -1)
