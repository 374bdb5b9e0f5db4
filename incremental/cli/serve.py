from __future__ import annotations

import signal

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli.options import MANIFEST, ROUTER, SITE, STORE, option, with_app
from sitemap_keeper.snapshot.pages import STATUS_PATH, Pages
from sitemap_keeper.snapshot.serve import make_server


def serve_until_interrupted(app: App, host: str, port: int, pages: bool = True) -> None:
    """Serve the live generation until Ctrl-C or SIGTERM, saying where first (tests read the port from that line)."""
    views = Pages(app.manifest, app.store, app.router, app.settings.base_url) if pages else None
    server = make_server(app.store, app.router, app.settings.base_path, host, port, views)
    click.echo(
        f"serving the live generation at http://{host}:{server.server_port}{app.settings.base_path}"
        "sitemap.xml (Ctrl-C stops)"
    )
    if views is not None:
        click.echo(f"pages for people: http://{host}:{server.server_port}{STATUS_PATH}")
    # SIGTERM (a container stopping) stops it as Ctrl-C does: the command returns and the process exits 0,
    # its worker processes and their semaphores cleaned up, instead of dying where it stands.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


@click.command("serve")
@option("--host", default="127.0.0.1", help="Address to listen on.")
@option("--port", type=int, default=8080, help="Port to listen on.")
@option(
    "--pages/--no-pages",
    default=True,
    help=f"Also serve the HTML pages for people ({STATUS_PATH}, /_view/): status, published files.",
)
@with_app(MANIFEST, SITE, STORE, ROUTER)
def command(app: App, host: str, port: int, pages: bool) -> None:
    """Serve the live generation over HTTP (what the router points at, at each request).

    \b
    Examples:
      sitemaps serve
      sitemaps serve --host 0.0.0.0 --port 8081
      sitemaps serve --no-pages
    """
    serve_until_interrupted(app, host, port, pages)
