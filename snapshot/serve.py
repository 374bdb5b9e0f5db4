"""Serve the live generation over HTTP, as the router would: what `current` points at, at request time."""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sitemap_keeper.snapshot.pages import Pages, send_page
from sitemap_keeper.snapshot.routers.base import Router
from sitemap_keeper.snapshot.stores.base import Store, content_type

log = logging.getLogger(__name__)


def make_server(
    store: Store, router: Router, base_path: str, host: str = "127.0.0.1", port: int = 8080, pages: Pages | None = None
) -> ThreadingHTTPServer:
    """`pages`: also answer the pages for people (/_status, /_view/), which no published name can shadow."""
    prefix = base_path.rstrip("/") + "/"

    class Handler(BaseHTTPRequestHandler):
        server_version = "sitemaps"

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            if pages is not None and (page := pages.respond(self.path)) is not None:
                send_page(self, page, body)
                return
            path = self.path.split("?", 1)[0]
            name = path[len(prefix) :] if path.startswith(prefix) else path.lstrip("/")
            live = router.current()
            if live is None or not name or "/" in name or name.startswith("."):
                self.send_error(HTTPStatus.NOT_FOUND, "no such sitemap" if live else "nothing published yet")
                return
            try:
                data = store.get(live, name)
            except (FileNotFoundError, KeyError):
                self.send_error(HTTPStatus.NOT_FOUND, "no such sitemap")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type(name))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Sitemaps-Generation", live)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="sitemaps-serve", daemon=True)
    thread.start()
    return thread
