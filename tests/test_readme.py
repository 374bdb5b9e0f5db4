"""The README's "your own site in five minutes" runs as written: its shell blocks, with the real command."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.services.ports import wait_for
from tests.support import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Your own site in five minutes") :]
    section = section[: section.index("\n## ", 4)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-euc", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_five_minute_site(tmp_path: Path) -> None:
    load, _sql, serve, feed = blocks()
    bin_dir = str(Path(sys.executable).parent)  # `sitemaps`, as installed beside this Python
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SITEMAPS_LOG_LEVEL": "WARNING",
        "SITEMAPS_DATA_DIR": str(tmp_path / "sitemaps-data"),
    }
    bash(load, tmp_path, env)
    base = re.search(r"SITEMAPS_BASE_URL=(\S+)", load)
    assert base
    env["SITEMAPS_BASE_URL"] = base.group(1)
    # `sitemaps robots` prints what the block says it prints
    robots_line = re.search(r"sitemaps robots\s+# (.*)", serve)
    assert robots_line and robots_line.group(1) in cli("robots", env=env, cwd=tmp_path).stdout.splitlines()
    # the change feed: the events appended to the followed file are published
    appends = "\n".join(line for line in feed.splitlines() if line.startswith("echo "))
    bash(appends, tmp_path, env)
    follow = re.search(r"sitemaps run (--follow \S+)", feed)
    assert follow
    env.update(SITEMAPS_PUBLISH_INTERVAL="1", SITEMAPS_HTTP_PORT="0", SITEMAPS_HTTP_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sitemap_keeper", "run", *follow.group(1).split()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: _served_urls(tmp_path) == {"https://example.org/", "https://example.org/contact"},
            60,
            "the change feed published",
        )
    finally:
        proc.terminate()
        proc.wait(30)


def _served_urls(cwd: Path) -> set[str]:
    """The URLs of the live generation, read from the files on disk (the local store)."""
    live = (cwd / "sitemaps-data" / "current").resolve()
    return {
        m.decode()
        for f in live.glob("*.xml.gz")
        for m in re.findall(rb"<loc>([^<]+)</loc>", gzip.decompress(f.read_bytes()))
    }
