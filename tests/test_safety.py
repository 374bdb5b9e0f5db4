"""`sitemaps demo` never touches a configured site; read-only commands never create or change anything."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, inspect

from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.errors import ReadOnly
from tests.conftest import fresh_pg_database
from tests.factories import doc
from tests.service_helpers import service_env
from tests.support import cli

READERS = [("status",), ("status", "--json"), ("verify",), ("diff",), ("dead-letters",), ("robots",)]


def tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def tree(root: Path) -> dict[str, Any]:
    """Every file and link under `root`: its size and modification time, or its target."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_file():
            st = path.stat()
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_database()


def test_the_demo_never_touches_the_configured_site(tmp_path: Path, pg_url: str) -> None:
    real = service_env(tmp_path / "real", pg_url, SITEMAPS_LOG_LEVEL="WARNING", SITEMAPS_MAX_SHRINK="0.5")
    source = tmp_path / "site.jsonl"
    source.write_bytes(orjson.dumps(doc(1)) + b"\n" + orjson.dumps(doc(2)) + b"\n")
    cli("rebuild", "--source", str(source), env=real)
    before = json.loads(cli("status", "--json", env=real).stdout)
    files = tree(tmp_path / "real")
    assert before["urls"] == 2 and files

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # As inside the Deployment's pod: the real site's manifest and data dir, and S3 and Kubernetes settings
    # that fail at once if anything tries them.
    pod = {
        **real,
        "SITEMAPS_STORAGE": "s3",
        "SITEMAPS_S3_ENDPOINT": "127.0.0.1:9",
        "SITEMAPS_S3_SECURE": "false",
        "SITEMAPS_S3_ACCESS_KEY": "k",
        "SITEMAPS_S3_SECRET_KEY": "s",
        "SITEMAPS_ROUTER": "ingress",
        "SITEMAPS_KUBE_API": "http://127.0.0.1:9",
    }
    for env in (real, pod):
        out = cli("demo", "--documents", "2000", "--changes", "100", "--no-serve", env=env, cwd=cwd).stdout
        assert out.startswith(f"demo data in {cwd / 'sitemaps-demo'} ")
    assert os.readlink(cwd / "sitemaps-demo" / "current").startswith("generations/")
    assert (cwd / "sitemaps-demo" / "manifest.db").is_file()

    after = json.loads(cli("status", "--json", env=real).stdout)
    assert after == {**before, "live_age_seconds": after["live_age_seconds"]}
    assert tree(tmp_path / "real") == files

    # Nor a data dir the demo did not make, even when named on its command line.
    refused = cli(
        "demo", "--documents", "100", "--no-serve", "--data-dir", str(tmp_path / "real" / "data"), env=real, check=False
    )
    assert refused.returncode == 2 and "holds files the demo did not make" in refused.stderr
    assert tree(tmp_path / "real") == files


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_reader_on_an_empty_sqlite_path_creates_nothing(tmp_path: Path, args: tuple[str, ...]) -> None:
    data = tmp_path / "data"
    proc = cli(*args, env={"SITEMAPS_DATA_DIR": str(data)}, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: no manifest at sqlite:///{data / 'manifest.db'}"]
    assert not data.exists()
    db = tmp_path / "other.db"
    proc = cli(*args, env={"SITEMAPS_DATA_DIR": str(data), "SITEMAPS_DATABASE_URL": f"sqlite:///{db}"}, check=False)
    assert proc.returncode == 1 and "no manifest at" in proc.stderr
    assert not db.exists() and not data.exists()


def test_a_reader_on_an_empty_postgresql_database_creates_nothing(tmp_path: Path, pg_url: str) -> None:
    with_password = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth: any password will do
    masked = pg_url.replace("postgres@", "postgres:***@")
    for args in READERS:
        proc = cli(
            *args,
            env={"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_DATABASE_URL": with_password},
            check=False,
        )
        assert proc.returncode == 1, args
        assert proc.stderr.strip().splitlines() == [f"error: no manifest at {masked}"], args
    assert tables(pg_url) == set()
    assert not (tmp_path / "data").exists()


def test_readers_change_nothing_in_a_manifest(tmp_path: Path, database_url: str) -> None:
    env = service_env(tmp_path, database_url, SITEMAPS_LOG_LEVEL="WARNING")
    source = tmp_path / "site.jsonl"
    source.write_bytes(b"".join(orjson.dumps(doc(i)) + b"\n" for i in range(30)))
    cli("rebuild", "--source", str(source), env=env)
    found = tables(database_url)
    files = tree(tmp_path / "data")
    for args in READERS:
        cli(*args, env=env)
    assert tables(database_url) == found
    files_after = tree(tmp_path / "data")
    for name in ("manifest.db", "manifest.db-wal", "manifest.db-shm"):  # SQLite's own files: read, not written
        files.pop(name, None)
        files_after.pop(name, None)
    assert files_after == files


def test_a_manifest_opened_for_reading_refuses_every_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Manifest.open(url).close()
    reader = Manifest.open_existing(url)
    try:
        with pytest.raises(ReadOnly), reader.write():
            pass
        assert reader.reader.shards() == []  # reads work
    finally:
        reader.close()
