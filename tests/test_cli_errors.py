"""Everyday failures through the real `sitemaps` command: one line on standard error, exit 2 (usage and
settings) or 1 (run time), no traceback; `--debug` or SITEMAPS_DEBUG=1 shows the traceback."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitemap_keeper.snapshot import synthetic
from tests.support import cli

HOST = "librer.io"


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(proc: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def traced(proc: subprocess.CompletedProcess[str], status: int) -> None:
    assert proc.returncode == status and "Traceback (most recent call last)" in proc.stderr, proc


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "INFO",
        "SITEMAPS_DEBUG": "",
    }


def test_database_unreachable(env: dict[str, str]) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    for args in (["status"], ["publish"], ["apply", "-"]):
        proc = cli(*args, "--database-url", url, env=env, check=False, stdin=b"")
        one_line(proc, 1, "database error", "Connection refused")
    traced(cli("--debug", "status", "--database-url", url, env=env, check=False), 1)
    traced(cli("status", "--database-url", url, env={**env, "SITEMAPS_DEBUG": "1"}, check=False), 1)


def test_missing_driver(env: dict[str, str], tmp_path: Path) -> None:
    one_line(cli("status", "--database-url", "mysql://u@127.0.0.1/x", env=env, check=False), 2, "MySQLdb")
    proc = cli(
        "rebuild", "--source-sql", "SELECT 1", "--source-database-url", "mysql://u@127.0.0.1/x", env=env, check=False
    )
    one_line(proc, 2, "MySQLdb", "not installed")
    one_line(cli("status", "--database-url", "nosuch://x", env=env, check=False), 2, "bad database URL")
    traced(cli("--debug", "status", "--database-url", "mysql://u@127.0.0.1/x", env=env, check=False), 2)


def test_bad_log_level_and_format(env: dict[str, str]) -> None:
    one_line(cli("status", env={**env, "SITEMAPS_LOG_LEVEL": "loud"}, check=False), 2, "SITEMAPS_LOG_LEVEL")
    one_line(cli("status", env={**env, "SITEMAPS_LOG_FORMAT": "xml"}, check=False), 2, "SITEMAPS_LOG_FORMAT")
    one_line(cli("robots", "--no-such-option", env=env, check=False), 2, "--no-such-option", "robots --help")


def test_a_renamed_variable_is_refused_not_ignored(env: dict[str, str]) -> None:
    proc = cli("status", env={**env, "SITEMAPS_INGRESS_NAMESPACE": "web"}, check=False)
    one_line(proc, 2, "SITEMAPS_INGRESS_NAMESPACE is now SITEMAPS_ROUTER_NAMESPACE")
    proc = cli("status", env={**env, "SITEMAPS_INGRESS_LABEL": "b", "SITEMAPS_INGRESS_NAMESPACE": "web"}, check=False)
    one_line(proc, 2, "SITEMAPS_INGRESS_LABEL is now SITEMAPS_ROUTER_LABEL", "SITEMAPS_ROUTER_NAMESPACE")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_serve_on_a_busy_port(env: dict[str, str], busy_port: int) -> None:
    one_line(cli("serve", "--port", str(busy_port), env=env, check=False, timeout=30), 1, "Address already in use")
    traced(cli("--debug", "serve", "--port", str(busy_port), env=env, check=False, timeout=30), 1)


@pytest.mark.timeout(180)
def test_replay_with_the_broker_unreachable(env: dict[str, str]) -> None:
    """kafka-python gives up bootstrapping after its request timeout (30 s); its own retry records stay quiet."""
    servers = f"127.0.0.1:{free_port()}"
    proc = cli("replay", "--exit", "--kafka-bootstrap-servers", servers, env=env, check=False, timeout=120)
    one_line(proc, 1, "Kafka", servers)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount(8): skipped without them)."""
    where = tmp_path / "full"
    where.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_disk_full(env: dict[str, str], tmp_path: Path, full_disk: Path) -> None:
    synthetic.write_catalog(tmp_path / "catalog.jsonl", 20_000)  # about 200 KB of gzipped sitemaps
    source = str(tmp_path / "catalog.jsonl")
    env = {**env, "SITEMAPS_ALLOWED_HOSTS": synthetic.HOST}
    # the files of the generation do not fit (the manifest is elsewhere)
    proc = cli(
        "rebuild",
        "--source",
        source,
        "--data-dir",
        str(full_disk),
        "--database-url",
        f"sqlite:///{tmp_path / 'manifest.db'}",
        env=env,
        check=False,
    )
    one_line(proc, 1, "disk full", "No space left on device")
    # the SQLite manifest does not fit
    proc = cli("rebuild", "--source", source, "--data-dir", str(full_disk), env=env, check=False)
    one_line(proc, 1, "database error", "full")


def test_a_manifest_damaged_by_hand(env: dict[str, str], tmp_path: Path) -> None:
    """A manifest that contradicts itself (here: its packs no longer hold the documents they should) is an
    everyday failure, not a bug: one line naming what is wrong, and the live site as it was."""
    source = tmp_path / "catalog.jsonl"
    source.write_text(
        "".join(f'{{"section": "pages", "key": "k{i}", "loc": "https://{HOST}/p{i}"}}\n' for i in range(5))
    )
    cli("rebuild", "--source", str(source), env=env)
    live = (tmp_path / "data" / "current").resolve()
    with sqlite3.connect(tmp_path / "data" / "manifest.db") as db:
        db.execute("UPDATE shard_packs SET entry_to = entry_from")
    proc = cli("publish", "--full", env=env, check=False)
    one_line(proc, 1, "document 'k0' of shard 1 of section pages is packed, but no pack of the shard holds it")
    assert (tmp_path / "data" / "current").resolve() == live
    traced(cli("--debug", "publish", "--full", env=env, check=False), 1)
