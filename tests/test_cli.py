"""The real `sitemaps` command, end to end in subprocesses, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text

from tests import factories
from tests.factories import HOST, write_jsonl
from tests.support import Model, cli, http_fetch, read_site

BASE = "http://127.0.0.1:8080/sitemaps/"


def doc(i: int, version: int = 1, section: str = "books", day: int = 1) -> dict[str, object]:
    """A document with every optional field this command reads."""
    return factories.doc(
        i,
        version,
        section,
        day,
        changefreq="daily",
        priority=0.7,
        images=[{"loc": f"https://cdn.{HOST}/{i}.jpg", "title": "A <b>&'\" title"}],
        alternates=[{"hreflang": "de", "href": f"https://{HOST}/de/{section}/{i}"}],
    )


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "50",
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sitemap_keeper", "serve", "--port", "0"],
            env={**__import__("os").environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*/)sitemap\.xml", line)
        assert m, line
        self.base = f"http://127.0.0.1:{m.group(1)}{m.group(2)}"

    def site(self) -> dict[str, str | None]:
        return read_site(http_fetch(self.base), BASE).urls

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM, as a container stopping: served until then, exit status 0
        assert self.proc.wait(10) == 0


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[Server]:
    s = Server(env)
    yield s
    s.stop()


def test_full_cycle_through_the_cli(tmp_path: Path, env: dict[str, str], server: Server) -> None:
    model = Model()
    docs: list[dict[str, object] | str] = [doc(i, section=("books", "authors", "series")[i % 3]) for i in range(240)]
    bad = [
        '{"section": "books", "key": "x1", "loc": "https://evil.example/x"}',
        '{"section": "Books!", "key": "x2", "loc": "https://librer.io/x"}',
        "this is not json",
        '{"section": "books", "key": "x3", "loc": "https://librer.io/x", "lastmod": "yesterday"}',
    ]
    src = write_jsonl(tmp_path / "catalog.jsonl", docs[:100] + bad + docs[100:])
    out = cli("rebuild", "--source", str(src), env=env).stdout
    assert "applied 240, stale 0, rejected 4" in out
    for d in docs:
        assert isinstance(d, dict)
        model.event(d)
    assert server.site() == model.expected()

    letters = [json.loads(line) for line in cli("dead-letters", "--json", env=env).stdout.splitlines()]
    assert [d["source"] for d in letters] == [f"catalog.jsonl:{n}" for n in (101, 102, 103, 104)]
    reasons = " | ".join(d["reason"] for d in letters)
    assert "not an allowed host" in reasons and "section must match" in reasons
    assert "not valid JSON" in reasons and "not a W3C datetime" in reasons
    assert letters[2]["raw"] == "this is not json"

    status = json.loads(cli("status", "--json", env=env).stdout)
    first = status["live_generation"]
    assert status["urls"] == 240 and status["dirty_shards"] == 0 and status["dead_letters"] == 4
    assert status["sitemap_lines"] == [f"Sitemap: {BASE}sitemap.xml"]
    assert cli("publish", env=env).stdout.startswith("nothing to publish")

    events: list[dict[str, object] | str] = [
        doc(5, version=2, section="series", day=20),
        {"op": "delete", "section": "books", "key": "3", "version": 2},
        doc(1000, version=1),
        doc(4, version=1, section="authors", day=25),  # stale: the manifest has version 1 already
        '{"op": "explode", "section": "books", "key": "1"}',
    ]
    out = cli("apply", str(write_jsonl(tmp_path / "events.jsonl", events)), env=env).stdout
    assert "applied 3, stale 1, rejected 1" in out
    for e in events:
        if isinstance(e, dict):
            model.event(e)
    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["dirty_shards"] == 3  # books (delete + new doc in the open shard), series
    out = cli("publish", env=env).stdout
    assert "3 shards rendered" in out
    second = json.loads(cli("status", "--json", env=env).stdout)["live_generation"]
    assert second != first and second > first
    assert server.site() == model.expected()
    cli("verify", "--deep", env=env)

    # events from standard input
    out = cli("apply", "-", env=env, stdin=orjson.dumps(doc(2000, section="authors")) + b"\n").stdout
    assert "applied 1" in out
    model.event(doc(2000, section="authors"))
    cli("publish", env=env)
    assert server.site() == model.expected()

    rolled = cli("rollback", env=env).stdout
    assert f"to {second}" in rolled
    assert 2000 not in {int(u.rsplit("/", 1)[1]) for u in server.site()}
    assert json.loads(cli("status", "--json", env=env).stdout)["dirty_shards"] == 1
    cli("resume", env=env)  # a rollback holds the site until then
    cli("publish", env=env)  # the manifest's state comes back on top
    assert server.site() == model.expected()

    out = cli("prune", "--keep", "2", "--grace", "0", env=env).stdout
    assert "kept 2" in out and "deleted 2" in out
    status = json.loads(cli("status", "--json", env=env).stdout)
    assert len(status["retained_generations"]) == 2
    gens = sorted(p.name for p in (Path(env["SITEMAPS_DATA_DIR"]) / "generations").iterdir())
    assert gens == sorted(status["retained_generations"])
    bad_rollback = cli("rollback", first, env=env, check=False)
    assert bad_rollback.returncode == 1 and f"generation {first} is not a retained generation" in bad_rollback.stderr
    assert "Traceback" not in bad_rollback.stderr


def test_served_content_types(env: dict[str, str], tmp_path: Path, server: Server) -> None:
    cli("rebuild", "--source", str(write_jsonl(tmp_path / "c.jsonl", [doc(i) for i in range(60)])), env=env)
    for name, ctype in (
        ("sitemap.xml", "application/xml"),
        ("sitemap-books.xml", "application/xml"),
        ("sitemap-books-1.xml.gz", "application/gzip"),
    ):
        with urllib.request.urlopen(server.base + name) as resp:
            assert resp.headers["Content-Type"] == ctype
            assert resp.headers["X-Sitemaps-Generation"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.base + "sitemap-nope-1.xml.gz")
    assert err.value.code == 404


def test_rebuild_from_the_application_database(
    env: dict[str, str], tmp_path: Path, server: Server, database_url: str
) -> None:
    # The application's own database: the same server as the manifest, another table.
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE app_books (id INTEGER PRIMARY KEY, slug VARCHAR(100), updated DATE, cover VARCHAR(200))")
        )
        conn.execute(
            text("INSERT INTO app_books VALUES (:id, :slug, :updated, :cover)"),
            [
                {
                    "id": i,
                    "slug": f"book-{i}",
                    "updated": f"2024-03-{1 + i % 28:02d}",
                    "cover": f'[{{"loc": "https://cdn.{HOST}/{i}.jpg"}}]',
                }
                for i in range(120)
            ],
        )
    engine.dispose()
    query = (
        f"SELECT 'books' AS section, id AS key, 'https://{HOST}/b/' || slug AS loc, updated AS lastmod, "
        "cover AS images FROM app_books"
    )
    out = cli("rebuild", "--source-sql", query, "--source-database-url", env["SITEMAPS_DATABASE_URL"], env=env).stdout
    assert "applied 120, stale 0, rejected 0" in out
    site = server.site()
    assert site == {f"https://{HOST}/b/book-{i}": f"2024-03-{1 + i % 28:02d}" for i in range(120)}


def test_bad_options_say_what_is_wrong(env: dict[str, str]) -> None:
    proc = cli("publish", "--max-urls", "60000", env=env, check=False)
    assert proc.returncode == 2 and "max URLs per shard must be from 1 to 50000" in proc.stderr
    proc = cli("publish", "--base-url", "ftp://x", env=env, check=False)
    assert proc.returncode == 2 and "base URL must be an absolute http(s) URL" in proc.stderr
    proc = cli("rebuild", env=env, check=False)
    assert proc.returncode == 2 and "exactly one of --source" in proc.stderr
    proc = cli("publish", env=env, check=False)
    assert proc.returncode == 1 and "no documents" in proc.stderr


def test_serve_waits_for_first_publish(env: dict[str, str], server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.base + "sitemap.xml")
    assert err.value.code == 404
    time.sleep(0)


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_demo_stops_serving_on_sigterm_as_on_ctrl_c(tmp_path: Path, stop: str) -> None:
    """SIGTERM, and Ctrl-C as a terminal sends it (SIGINT to the whole process group, the worker processes
    included), end the demo's serving: exit status 0 and nothing on stderr (no warning about semaphores its
    worker processes left behind, no worker's KeyboardInterrupt traceback)."""
    argv = ["demo", "--documents", "3000", "--changes", "3000", "--port", "0", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sitemap_keeper", *argv],
        env={**os.environ, "SITEMAPS_LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a foreground job
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.search(r"serving the live generation at (http://\S+)", line):
            break
    else:
        raise AssertionError(f"the demo never served: {proc.communicate(timeout=30)}")
    with urllib.request.urlopen(m.group(1)) as answer:
        assert answer.status == 200
    if stop == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")


def test_demo_runs_every_step(tmp_path: Path) -> None:
    env = {"SITEMAPS_LOG_LEVEL": "WARNING"}
    out = cli(
        "demo", "--documents", "3000", "--changes", "200", "--no-serve", "--data-dir", str(tmp_path / "data"), env=env
    ).stdout
    for step in (
        "write the catalog file (3,000 documents)",
        "rebuild: load 3,000 documents",
        "publish incrementally",
        "publish one changed document",
        "nothing to publish",
        "prune, keeping 2",
        "Sitemap: http://127.0.0.1:8080/sitemaps/sitemap.xml",
    ):
        assert step in out, step
    assert "1 shards rendered" in out
    assert not list((tmp_path / "data").glob("demo-catalog*"))  # the catalog file is the rebuild's, then gone
    current = tmp_path / "data" / "current"
    site = read_site(lambda name: (current / name).read_bytes(), BASE)
    assert len(site.urls) > 3000  # the catalog plus the new documents of the change stream, less deletions
