"""A tiny HTTP server for the probes and Prometheus: /healthz, /readyz and /metrics; and the pages for people
(/_status, /_view/: snapshot/pages.py) when given them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sitemap_keeper.snapshot.pages import Pages, send_page

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]


def make_health_server(
    host: str, port: int, alive: Probe, ready: Probe, registry: CollectorRegistry, pages: Pages | None = None
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sitemaps"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, why = (alive if path == "/healthz" else ready)()
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, (why + "\n").encode(), "text/plain; charset=utf-8")
            elif pages is not None and (page := pages.respond(self.path)) is not None:
                send_page(self, page)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sitemaps-health", daemon=True).start()
    return server
