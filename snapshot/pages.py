"""Pages a person can read, served as plain HTML by `sitemaps serve` and the service's HTTP port.

  /_status                         the status page: what `sitemaps status --json` says, the last publishes with
                                   what each changed, the newest dead letters, and what the process adds (lag)
  /_view/                          the files of the live generation
  /_view/<file>?page=N             one page (PER_PAGE entries) of a published file: URLs, lastmods, images,
                                   alternates, and every other child of <url> (news, video, ...) as name/value

`?generation=<id>` shows a retained generation instead of the live one. Published names start with `sitemap`
(snapshot/naming.py) or are a generation's extra files (an IndexNow key): never `_`, so these paths cannot
collide with a published file. Pages are built on the server with the standard library; see snapshot/html.py
for how hostile text is kept text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sitemap_keeper.snapshot import diff, naming
from sitemap_keeper.snapshot.browse import Entry, FilePage, NotASitemap, read_page
from sitemap_keeper.snapshot.html import HEADERS, any_value, document, esc, link, scalar, table, title_case, when
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import FileRecord, Generation
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.status import status
from sitemap_keeper.snapshot.stores.base import Store

log = logging.getLogger(__name__)

STATUS_PATH = "/_status"
VIEW_PATH = "/_view/"
PER_PAGE = 500
PUBLISHES = 10  # the newest generations shown with what each changed
LETTERS = 20  # the newest dead letters shown
RAW_SHOWN = 300  # characters of a dead letter's raw input shown
# Keys of the status data with a section of their own; every other key is shown generically.
_OWN = frozenset({"sections", "last_diff", "publishes", "recent_dead_letters", "process"})
Extra = Callable[[], dict[str, Any]]


class Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def status_data(manifest: Manifest, store: Store, router: Router, base_url: str) -> dict[str, Any]:
    """`sitemaps status --json`, with the last publishes and the newest dead letters."""
    info = status(manifest, store, router, base_url)
    return {**info, "publishes": publishes(manifest), "recent_dead_letters": recent_dead_letters(manifest)}


def publishes(manifest: Manifest, limit: int = PUBLISHES) -> list[dict[str, Any]]:
    """The newest generations that went live, with the counts recorded when they did."""
    gens = [g for g in reversed(manifest.generations.all()) if g.published_at is not None][:limit]
    out = []
    for g in gens:
        rec = diff.recorded(manifest, g.id)
        out.append(
            {
                "generation": g.id,
                "state": g.state,
                "published_at": g.published_at,
                "base": g.base_id,
                "urls": g.url_count,
                "files": g.file_count,
                "rendered": g.rendered,
                "copied": g.copied,
                "changed": diff.as_json(rec.sections) if rec else None,
            }
        )
    return out


def recent_dead_letters(manifest: Manifest, limit: int = LETTERS) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "created_at": r.created_at,
            "source": r.source,
            "reason": r.reason,
            "raw": bytes(r.raw)[: RAW_SHOWN * 4].decode("utf-8", "replace")[:RAW_SHOWN],
        }
        for r in manifest.dead_letters.newest(limit)
    ]


class Pages:
    """Answers the page paths; `respond` returns None for any other path (the caller's own)."""

    def __init__(
        self, manifest: Manifest, store: Store, router: Router, base_url: str, extra: Extra | None = None
    ) -> None:
        self.manifest, self.store, self.router, self.base_url = manifest, store, router, base_url
        self.extra = extra  # what the running process knows (the service: lag, readiness); None under serve

    @staticmethod
    def handles(raw_path: str) -> bool:
        path = raw_path.split("?", 1)[0]
        return path == STATUS_PATH or path == VIEW_PATH.rstrip("/") or path.startswith(VIEW_PATH)

    def respond(self, raw_path: str) -> Response | None:
        if not self.handles(raw_path):
            return None
        try:
            return self._respond(raw_path)
        except Exception as exc:  # the manifest, store or router failing: one line on the page, not a dropped request
            log.warning("page %s failed: %s: %s", raw_path.split("?", 1)[0], exc.__class__.__name__, exc)
            return _error(503, f"the page could not be built: {exc.__class__.__name__} (the log says more)")

    def _respond(self, raw_path: str) -> Response:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == STATUS_PATH:
            return self._ok("Sitemaps status", status_body(self.data()))
        return self._view(unquote(parts.path[len(VIEW_PATH) :]), query)

    def data(self) -> dict[str, Any]:
        info = status_data(self.manifest, self.store, self.router, self.base_url)
        if self.extra is not None:
            info["process"] = self.extra()
        return info

    def _view(self, name: str, query: dict[str, str]) -> Response:
        gen_id = query.get("generation") or self.router.current()
        if gen_id is None:
            return _error(404, "nothing published yet")
        gen = self.manifest.generations.get(gen_id)
        if gen is None or gen.state not in diff.READABLE:
            why = "not recorded in this manifest" if gen is None else f"{gen.state}: its files are not readable"
            return _error(404, f"generation {gen_id} is {why}")
        files = self.manifest.generations.files(gen_id)
        if not name:
            return self._ok(f"Files of {gen_id}", files_body(gen, files))
        if name not in files:
            return _error(404, f"{gen_id} has no file {name}")
        page = query.get("page", "1")
        if not page.isdecimal() or int(page) < 1:
            return _error(400, f"page must be a whole number from 1, got {page!r}")
        return self._file(gen, files, name, int(page))

    def _file(self, gen: Generation, files: dict[str, FileRecord], name: str, page: int) -> Response:
        try:
            data = self.store.get(gen.id, name)
        except (FileNotFoundError, KeyError):
            return _error(404, f"{gen.id}/{name} is gone from the store")
        try:
            found = read_page(data, (page - 1) * PER_PAGE, PER_PAGE)
        except NotASitemap as exc:
            return _error(422, f"{name} cannot be shown: {exc}")
        pages = max(1, -(-found.total // PER_PAGE))
        if page > pages:
            return _error(404, f"{name} has {pages} page(s) of {PER_PAGE} entries, not {page}")
        return self._ok(f"{name} ({gen.id})", file_body(gen, files, name, found, page, pages))

    @staticmethod
    def _ok(title: str, body: str) -> Response:
        return Response(200, document(title, body), dict(HEADERS))


def _error(code: int, message: str) -> Response:
    body = f'<nav>{link(STATUS_PATH, "status")}</nav><h1>{code}</h1><p id="error">{esc(message)}</p>'
    return Response(code, document(f"{code}: {message}", body), dict(HEADERS))


def view_href(name: str, gen_id: str | None = None, page: int | None = None) -> str:
    query = [f"generation={quote(gen_id, safe='')}"] if gen_id else []
    query += [f"page={page}"] if page else []
    return VIEW_PATH + quote(name, safe="") + ("?" + "&".join(query) if query else "")


# -- the status page ----------------------------------------------------------------------------------------


def status_body(info: Mapping[str, Any]) -> str:
    live = info.get("live_generation")
    parts = [
        f"<nav>{link(STATUS_PATH, 'status')}{link(VIEW_PATH, 'files') if live else ''}</nav>",
        "<h1>Sitemaps status</h1>",
        "<h2>Summary</h2>" + table(("name", "value"), _summary_rows(info), css_id="summary"),
    ]
    parts.append(
        "<h2>This process</h2>"
        + (
            any_value("process", info["process"])
            if "process" in info
            else '<p class="muted">no event source here (sitemaps serve): lag and readiness are on the '
            "service's own status page</p>"
        )
    )
    parts.append("<h2>Sections</h2>" + _sections(info.get("sections") or {}))
    parts.append("<h2>Last publishes</h2>" + _publishes(info.get("publishes") or [], live))
    parts.append("<h2>Newest dead letters</h2>" + _letters(info.get("recent_dead_letters") or []))
    for key, value in info.items():
        if key not in _OWN and isinstance(value, Mapping | list | tuple):
            parts.append(f"<h2>{esc(title_case(key))}</h2>" + any_value(key, value))
    return "\n".join(parts)


def _summary_rows(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every scalar of the status data, in its order: a new scalar key shows up here without more code."""
    rows = []
    for key, value in info.items():
        if key in _OWN or isinstance(value, Mapping | list | tuple):
            continue
        cell = scalar(key, value)
        if key == "live_generation" and value:
            cell = link(VIEW_PATH, str(value))
        rows.append((esc(key), cell))
    return rows


def _sections(sections: Mapping[str, Any]) -> str:
    if not sections:
        return '<p class="muted">no sections yet</p>'
    rows = [(esc(name), esc(s.get("urls")), esc(s.get("shards"))) for name, s in sections.items()]
    return table(("section", "URLs", "shards"), rows, numeric=frozenset({1, 2}), css_id="sections")


def _publishes(pubs: list[dict[str, Any]], live: str | None) -> str:
    if not pubs:
        return '<p class="muted">nothing published yet</p>'
    rows = []
    for p in pubs:
        gen = p["generation"]
        readable = p["state"] in diff.READABLE
        name = link(view_href("", gen), gen) if readable else esc(gen)
        rows.append(
            (
                name + (" (live)" if gen == live else ""),
                esc(p["state"]),
                scalar("published_at", p["published_at"]),
                esc(p["urls"]),
                f"{esc(p['files'])} ({esc(p['rendered'])} rendered)",
                esc(p["base"] or "—"),
                _changed(p["changed"]),
            )
        )
    return table(
        ("generation", "state", "published", "URLs", "files", "against", "what it changed"),
        rows,
        numeric=frozenset({3}),
        css_id="publishes",
    )


def _changed(changed: dict[str, Any] | None) -> str:
    if changed is None:
        return '<span class="muted">not recorded</span>'
    per_section = ", ".join(
        f"{esc(s)}: +{c['added']} -{c['removed']} ~{c['changed']}"
        for s, c in changed["sections"].items()
        if c["added"] or c["removed"] or c["changed"]
    )
    head = f"+{changed['added']} added, -{changed['removed']} removed, ~{changed['changed']} new lastmod"
    return esc(head) + (f'<br><span class="muted">{per_section}</span>' if per_section else "")


def _letters(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return '<p class="muted">none</p>'
    rows = [
        (esc(d["id"]), esc(when(d["created_at"])), esc(d["source"]), esc(d["reason"]), f"<code>{esc(d['raw'])}</code>")
        for d in letters
    ]
    return table(("id", "when", "source", "reason", "input"), rows, css_id="dead-letters")


# -- the file views -----------------------------------------------------------------------------------------


def files_body(gen: Generation, files: dict[str, FileRecord]) -> str:
    rows = [
        (
            link(view_href(f.name, gen.id), f.name),
            esc(f.section or ""),
            esc(f.url_count),
            esc(f.size),
            esc(f.lastmod or ""),
        )
        for f in sorted(files.values(), key=_file_order)
    ]
    return (
        f"<nav>{link(STATUS_PATH, 'status')}</nav><h1>Files of {esc(gen.id)}</h1>"
        f"<p>{esc(gen.state)}, published {esc(when(gen.published_at))}</p>"
        + table(("file", "section", "URLs", "bytes", "lastmod"), rows, numeric=frozenset({2, 3}), css_id="files")
    )


def _file_order(f: FileRecord) -> tuple[int, str, int, str]:
    """Root indexes, then section indexes, then shards by section and number."""
    kind = 0 if naming.is_root_index(f.name) else 1 if f.shard_no is None else 2
    return (kind, f.section or "", f.shard_no or 0, f.name)


def file_body(gen: Generation, files: dict[str, FileRecord], name: str, found: FilePage, page: int, pages: int) -> str:
    first = (page - 1) * PER_PAGE + 1
    shown = f"entries {first} to {first + len(found.entries) - 1} of {found.total}" if found.entries else "no entries"
    head = (
        f"<nav>{link(STATUS_PATH, 'status')}{link(view_href('', gen.id), 'files')}</nav>"
        f"<h1>{esc(name)}</h1><p>generation {esc(gen.id)} ({esc(gen.state)}), {esc(shown)}, "
        f"page {page} of {pages}</p>"
    )
    pager = _pager(name, gen.id, page, pages)
    if found.kind == "sitemapindex":
        rows = [_index_row(e, files, gen.id) for e in found.entries]
        body = table(("#", "sitemap", "lastmod"), rows, numeric=frozenset({0}), css_id="entries")
    else:
        rows = [_url_row(e) for e in found.entries]
        body = table(
            ("#", "loc", "lastmod", "changefreq", "priority", "images", "alternates", "other fields"),
            rows,
            numeric=frozenset({0}),
            css_id="entries",
        )
    return head + pager + body + pager


def _pager(name: str, gen_id: str, page: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = [("first", 1), ("previous", page - 1), ("next", page + 1), ("last", pages)]
    return (
        "<nav>"
        + "".join(
            link(view_href(name, gen_id, n), text)
            if 1 <= n <= pages and n != page
            else f'<span class="muted">{text}</span>'
            for text, n in links
        )
        + "</nav>"
    )


def _index_row(e: Entry, files: dict[str, FileRecord], gen_id: str) -> tuple[str, ...]:
    loc = e.simple.get("loc", "")
    child = loc.rsplit("/", 1)[-1]
    view = f" ({link(view_href(child, gen_id), 'view')})" if child in files else ""
    return (esc(e.number), link(loc, loc) + view, _nowrap(e.simple.get("lastmod", "")))


def _url_row(e: Entry) -> tuple[str, ...]:
    s = e.simple
    images = "".join(
        f"<li>{link(i.loc, i.loc)}"
        + "".join(f"<br>{label}: {esc(v)}" for label, v in (("title", i.title), ("caption", i.caption)) if v)
        + "</li>"
        for i in e.images
    )
    alternates = "".join(f"<li>{esc(a.hreflang)}: {link(a.href, a.href)}</li>" for a in e.alternates)
    fields = "".join(
        f"<li><b>{esc(f.path)}</b>"
        + "".join(f' <span class="muted">[{esc(k)}={esc(v)}]</span>' for k, v in f.attributes)
        + f": {esc(f.value)}</li>"
        for f in e.fields
    )
    return (
        esc(e.number),
        link(s.get("loc", ""), s.get("loc", "")),
        _nowrap(s.get("lastmod", "")),
        esc(s.get("changefreq", "")),
        esc(s.get("priority", "")),
        _list(images),
        _list(alternates),
        _list(fields),
    )


def _nowrap(text: str) -> str:
    return f'<span class="nowrap">{esc(text)}</span>'


def _list(items: str) -> str:
    return f'<ul class="plain">{items}</ul>' if items else ""


def send_page(handler: BaseHTTPRequestHandler, page: Response, body: bool = True) -> None:
    handler.send_response(page.status)
    for name, value in page.headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(page.body)))
    handler.end_headers()
    if body:
        handler.wfile.write(page.body)
