"""Independent checks for the tests: XSD validation with lxml, and reading a published site back in full."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

SCHEMAS = Path(__file__).parent / "schemas"
NS = {
    "sm": "http://www.sitemaps.org/schemas/sitemap/0.9",
    "image": "http://www.google.com/schemas/sitemap-image/1.1",
    "xhtml": "http://www.w3.org/1999/xhtml",
    "news": "http://www.google.com/schemas/sitemap-news/0.9",
    "video": "http://www.google.com/schemas/sitemap-video/1.1",
}
_URLSET = etree.XMLSchema(etree.parse(str(SCHEMAS / "all.xsd")))
_INDEX = etree.XMLSchema(etree.parse(str(SCHEMAS / "siteindex.xsd")))
_PARSER = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)


def validate(name: str, data: bytes) -> etree._Element:
    """Parse and validate one published file against the sitemaps.org schemas; return its root."""
    root = etree.fromstring(data, _PARSER)
    schema = _URLSET if root.tag == f"{{{NS['sm']}}}urlset" else _INDEX
    if not schema.validate(root):
        raise AssertionError(f"{name} is not schema-valid: {schema.error_log.last_error}")
    return root


@dataclass
class Site:
    """What a crawler sees: every URL with its lastmod, and the files it read."""

    urls: dict[str, str | None] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # name -> decompressed content
    news: dict[str, str] = field(default_factory=dict)  # loc -> news title, from the news files


def read_site(fetch: Callable[[str], bytes], base_url: str, roots: tuple[str, ...] = ("sitemap.xml",)) -> Site:
    """Follow the root index(es) to every shard, validating everything; fail on a URL listed twice."""
    site = Site()
    for root_name in roots:
        root = validate(root_name, fetch(root_name))
        site.files[root_name] = etree.tostring(root)
        for entry in root.findall("sm:sitemap", NS):
            loc = entry.findtext("sm:loc", namespaces=NS)
            assert loc is not None and loc.startswith(base_url), loc
            name = loc[len(base_url) :]
            data = fetch(name)
            xml = gzip.decompress(data) if name.endswith(".gz") else data
            assert len(xml) <= 50 * 1024 * 1024, f"{name} is over 50 MiB"
            urlset = validate(name, xml)
            site.files[name] = xml
            if ".news-" in name:  # a news file: its URLs are in the section's regular shards too
                for url in urlset.findall("sm:url", NS):
                    u = url.findtext("sm:loc", namespaces=NS)
                    assert u is not None and u not in site.news, f"{u} is listed twice in the news files"
                    site.news[u] = url.findtext("news:news/news:title", namespaces=NS) or ""
                continue
            lastmods = []
            for url in urlset.findall("sm:url", NS):
                u = url.findtext("sm:loc", namespaces=NS)
                assert u is not None
                assert u not in site.urls, f"{u} is listed twice"
                site.urls[u] = url.findtext("sm:lastmod", namespaces=NS)
                site.images[u] = [i.findtext("image:loc", namespaces=NS) or "" for i in url.findall("image:image", NS)]
                if site.urls[u]:
                    lastmods.append(site.urls[u])
            index_lastmod = entry.findtext("sm:lastmod", namespaces=NS)
            if lastmods:
                # The newest lastmod of the shard's URLs (as an instant: zones may differ), never the time of writing.
                assert index_lastmod in lastmods and _instant(index_lastmod) == max(map(_instant, lastmods)), (
                    name,
                    index_lastmod,
                    max(lastmods, key=_instant),
                )
    return site


def _instant(lastmod: str) -> datetime:
    moment = datetime.fromisoformat(lastmod)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Model:
    """The ground truth, kept independently of the product: the same version rules, applied naively."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.versions: dict[tuple[str, str], int] = {}

    def event(self, ev: dict[str, object]) -> bool:
        ident = (str(ev["section"]), str(ev["key"]))
        version = ev.get("version")
        known = self.versions.get(ident)
        if isinstance(version, int) and known is not None and version <= known:
            return False
        if isinstance(version, int):
            self.versions[ident] = version
        if ev.get("op", "upsert") == "delete":
            self.live.pop(ident, None)
        else:
            lastmod = ev.get("lastmod")
            self.live[ident] = (str(ev["loc"]), str(lastmod) if lastmod is not None else None)
        return True

    def expected(self) -> dict[str, str | None]:
        return dict(self.live.values())


def http_fetch(base_url: str) -> Callable[[str], bytes]:
    def fetch(name: str) -> bytes:
        with urllib.request.urlopen(base_url + name, timeout=30) as resp:
            return bytes(resp.read())

    return fetch


def cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the real `sitemaps` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "sitemap_keeper", *map(str, args)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin.decode() if stdin is not None else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sitemaps {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc
