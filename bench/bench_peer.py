"""The reference writer: xml-sitemap-writer (PyPI) against `sitemaps rebuild`, the same URLs, interleaved rounds.

    pip install -e '.[bench]'
    python bench/bench_peer.py --documents 1000000 --rounds 3 [--cache DIR] [--media]

xml-sitemap-writer is a stateless writer fed from memory: the URLs, lastmods, changefreqs and priorities are in a
list before its clock starts, it keeps nothing, and it writes 50,000 URLs per gzip file (zlib level 6), one
section after another, and the index. `sitemaps rebuild --source FILE` is the whole command (interpreter start-up
included, `bench.common.cli`): it reads and validates a JSON-lines file of the same documents, loads the manifest
(every document's row and packed content, the URL claims, the indexes) and publishes a full generation (isal
gzip level 1, which has no level 6; the two outputs' compressed sizes are printed).

Both get the synthetic catalog's documents (`snapshot/synthetic.py`) without their images and hreflang
alternates, which the peer cannot write: the same URLs with the same lastmods, changefreqs and priorities, 50,000
URLs per file. `--media` gives the rebuild the catalog with them (what bench_rebuild.py and bench_scale.py
load); the peer still writes the plain URLs.

The ratio is the peer's seconds over the rebuild's: 1.0 is as fast. CPU seconds are printed too (the peer's
process; the command's and its workers'): when other work shares the cores, wall seconds favour the rebuild,
whose two processes get two shares. Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import cli, made_dir
from sitemap_keeper.snapshot import synthetic

try:
    from xml_sitemap_writer import XMLSitemap
except ImportError:  # a bench extra, never a dependency of the product
    raise SystemExit("xml-sitemap-writer is not installed: pip install -e '.[bench]'") from None

PEER_LEVEL = 6  # zlib's gzip level (the library's default is 9)
URLS_PER_FILE = 50_000  # the library's default is 15,000; the sitemaps.org limit and this project's SITEMAPS_MAX_URLS
ROOT_URL = f"https://{synthetic.HOST}"
URL_TAG = re.compile(rb"<url>")


def plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A synthetic document without what the peer cannot write (images, alternates)."""
    return {k: v for k, v in doc.items() if k not in ("images", "alternates")}


def source_file(n: int, cache: Path, media: bool) -> Path:
    """The rebuild's JSON-lines source, written once per cache directory."""
    path = cache / (f"catalog-{n}.jsonl" if media else f"catalog-plain-{n}.jsonl")
    if not path.exists():
        part = path.with_name(path.name + ".part")
        with part.open("wb") as f:
            for doc in synthetic.catalog(n):
                f.write(orjson.dumps(doc if media else plain(doc)) + b"\n")
        part.rename(path)
    return path


def peer_input(n: int) -> dict[str, list[tuple[str, str, str, str]]]:
    """section -> (path, lastmod, priority, changefreq) of its documents in source order: what the peer is fed."""
    by_section: dict[str, list[tuple[str, str, str, str]]] = {s: [] for s in synthetic.SECTIONS}
    prefix = len(ROOT_URL) + 1
    for doc in synthetic.catalog(n):
        by_section[doc["section"]].append(
            (doc["loc"][prefix:], doc["lastmod"], str(doc["priority"]), doc["changefreq"])
        )
    return by_section


class Peer(XMLSitemap):  # type: ignore[misc]
    URLS_PER_FILE = URLS_PER_FILE
    GZIP_COMPRESSION_LEVEL = PEER_LEVEL


def write_peer(urls: dict[str, list[tuple[str, str, str, str]]], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for the peer to write every URL and its index into `out`."""
    out.mkdir(parents=True)
    started, cpu = time.perf_counter(), time.process_time()
    with Peer(str(out), ROOT_URL) as sitemap:
        for section, rows in urls.items():
            sitemap.add_section(section)
            add = sitemap.add_url
            for path, lastmod, priority, changefreq in rows:
                add(path, lastmod=lastmod, priority=priority, changefreq=changefreq)
    return time.perf_counter() - started, time.process_time() - cpu


def run_peer(documents: int, out: Path) -> tuple[float, float, float]:
    """The peer in a process of its own (its input is some 300 MiB of tuples at 1M: held here, it would count in the
    next command's peak RSS, which Linux carries over from the forking process's). (wall seconds, CPU seconds,
    peak RSS MiB of that process, its input included)."""
    with subprocess.Popen(
        [sys.executable, __file__, "--peer-into", str(out), "--documents", str(documents)], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        found = json.loads(proc.stdout.read())
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the peer failed ({proc.returncode})")
    return found["wall"], found["cpu"], usage.ru_maxrss / 1024


def run_rebuild(source: Path, tmp: Path, workers: int) -> tuple[float, float, float, float]:
    """(wall seconds of the whole command, its own seconds, CPU seconds of it and its workers, peak RSS MiB of its
    largest process)."""
    env = {
        **os.environ,
        "SITEMAPS_DATA_DIR": str(tmp / "data"),
        "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_WORKERS": str(workers),
        "SITEMAPS_DATABASE_URL": f"sqlite:///{tmp / 'manifest.db'}",
    }
    step = cli(["rebuild", "--source", str(source)], env, tmp / "logs")
    own = re.search(r"rebuild took ([\d.]+)s", step.out)
    return step.wall, float(own.group(1)) if own else float("nan"), step.cpu, step.peak_rss_mib


def output(tree: Path) -> tuple[int, int, int]:
    """(files, URLs, compressed bytes) of the .xml.gz files under `tree` (each file once: hard links too)."""
    seen: set[int] = set()
    files = urls = size = 0
    for path in sorted(tree.rglob("*.xml.gz")):
        inode = path.stat().st_ino
        if inode in seen or path.is_symlink():
            continue
        seen.add(inode)
        files += 1
        size += path.stat().st_size
        urls += len(URL_TAG.findall(gzip.decompress(path.read_bytes())))
    return files, urls, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--media", action="store_true", help="the rebuild's source keeps images and alternates")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sitemaps-bench")
    ap.add_argument("--workdir", type=made_dir, help="where the outputs go (default: the system's temporary directory)")
    ap.add_argument("--peer-into", type=Path, help=argparse.SUPPRESS)  # the peer's own process (run_peer)
    args = ap.parse_args()
    if args.peer_into is not None:
        wall, cpu = write_peer(peer_input(args.documents), args.peer_into)
        print(json.dumps({"wall": wall, "cpu": cpu}))
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    source = source_file(args.documents, args.cache, args.media)
    peer_times: list[tuple[float, float, float]] = []
    ours: list[tuple[float, float, float, float]] = []
    for r in range(args.rounds):
        order = ("peer", "rebuild") if r % 2 == 0 else ("rebuild", "peer")  # interleaved, alternating first
        for who in order:
            with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
                if who == "peer":
                    peer_times.append(run_peer(args.documents, Path(tmp, "peer")))
                    what = output(Path(tmp, "peer")) if r == 0 else None
                    wall, cpu, rss = peer_times[-1]
                    print(
                        f"round {r + 1}: peer     {wall:6.2f}s ({cpu:.2f}s CPU, peak RSS {rss:.0f} MiB with its input)",
                        flush=True,
                    )
                else:
                    ours.append(run_rebuild(source, Path(tmp), args.workers))
                    what = output(Path(tmp, "data")) if r == 0 else None
                    wall, own, cpu, rss = ours[-1]
                    print(
                        f"round {r + 1}: rebuild  {wall:6.2f}s ({cpu:.2f}s CPU; its own {own:.2f}s, peak RSS "
                        f"{rss:.0f} MiB)",
                        flush=True,
                    )
                if what is not None:
                    print(f"         {who} wrote {what[0]} files, {what[1]:,} URLs, {what[2] / 2**20:.1f} MiB gzip")
    peer_s = statistics.median(w for w, _c, _r in peer_times)
    peer_cpu = statistics.median(c for _w, c, _r in peer_times)
    wall_s = statistics.median(w for w, _o, _c, _r in ours)
    own_s = statistics.median(o for _w, o, _c, _r in ours)
    cpu_s = statistics.median(c for _w, _o, c, _r in ours)
    print(f"\n{args.documents:,} URLs, median of {args.rounds} interleaved rounds:")
    print(
        f"  xml-sitemap-writer (from memory, zlib level {PEER_LEVEL}): {peer_s:.2f}s "
        f"({args.documents / peer_s:,.0f} URLs/s), {peer_cpu:.2f}s CPU"
    )
    print(
        f"  sitemaps rebuild --source ({'with' if args.media else 'without'} images and alternates): "
        f"{wall_s:.2f}s whole command, {own_s:.2f}s its own ({args.documents / wall_s:,.0f} URLs/s), "
        f"{cpu_s:.2f}s CPU, peak RSS {max(r for _w, _o, _c, r in ours):.0f} MiB"
    )
    print(
        f"  ratio (peer seconds / rebuild seconds): {peer_s / wall_s:.2f} (whole command), "
        f"{peer_s / own_s:.2f} (its own time); CPU seconds: {peer_cpu / cpu_s:.2f}"
    )


if __name__ == "__main__":
    main()
