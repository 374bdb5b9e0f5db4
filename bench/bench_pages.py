"""The file view's cost: one page of a full 50,000-URL shard (snapshot/browse.py's read_page), first and last.

    python bench/bench_pages.py [--urls 50000] [--repeat 3]

The shard is rendered by snapshot/render.py (an image and an alternate per URL) and gzip-compressed, as the
store holds it; each request reads it whole once, keeping only the page's entries. Prints the seconds per page
(best of --repeat) and the peak Python memory of one read (tracemalloc, measured in a separate run), by the
line-counting path a shard of this service's takes, and by expat over the whole file, which any other takes.
"""

from __future__ import annotations

import argparse
import gzip
import time
import tracemalloc
from collections.abc import Callable

from sitemap_keeper.snapshot.browse import _parsed_page, inflated, read_page
from sitemap_keeper.snapshot.document import Alternate, Image
from sitemap_keeper.snapshot.pages import PER_PAGE
from sitemap_keeper.snapshot.render import URLSET_CLOSE, URLSET_OPEN, fragment


def shard(urls: int) -> bytes:
    frags = [
        fragment(
            f"https://librer.io/books/{i}",
            "2024-06-01T08:30:00+00:00",
            None,
            None,
            [Image(f"https://cdn.librer.io/{i}.jpg", None, f"Title {i}")],
            [Alternate("de", f"https://librer.io/de/books/{i}")],
        )
        for i in range(urls)
    ]
    return gzip.compress((URLSET_OPEN + "".join(frags) + URLSET_CLOSE).encode(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = shard(args.urls)
    print(f"{args.urls} URLs, {len(data)} bytes compressed")
    last = -(-args.urls // PER_PAGE)
    for path, read in (("lines", read_page), ("expat", _expat)):
        for page in (1, last):
            best = min(_timed(read, data, page) for _ in range(args.repeat))
            tracemalloc.start()
            read(data, (page - 1) * PER_PAGE, PER_PAGE)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{path}: page {page} of {last}: {best:.3f} s, peak {peak / 2**20:.1f} MiB")


def _expat(data: bytes, first: int, size: int) -> object:
    return _parsed_page(inflated(data), first, size)


def _timed(read: Callable[[bytes, int, int], object], data: bytes, page: int) -> float:
    start = time.perf_counter()
    read(data, (page - 1) * PER_PAGE, PER_PAGE)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
