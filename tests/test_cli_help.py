"""Each command's --help is short and lists only the settings groups its code reads (incremental/cli/options.py).

The groups a command declares are checked against the `Settings` fields it actually reads while it runs on a
small published site: a group none of whose fields is read has no business in that command's help.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli import COMMANDS, cli
from sitemap_keeper.incremental.cli.options import GROUPS, SHARED
from sitemap_keeper.snapshot.settings import Settings

HOST = "librer.io"
# The commands that serve or consume for good use every group (they publish, prune and serve probes).
EVERY_GROUP = {"run", "replay", "demo"}
# Lines of --help at most: about 150 for every command before the groups.
BUDGET = {"robots": 60, "dead-letters": 30, "apply": 60, **dict.fromkeys(EVERY_GROUP, 175)}
DEFAULT_BUDGET = 125


def help_text(command: str) -> str:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def listed_groups(command: str) -> set[str]:
    text = help_text(command)
    return {g.name for g in GROUPS for opt, _f, _kw in g.options if f"{opt} " in text}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_short_with_examples(command: str) -> None:
    text = help_text(command)
    lines = text.splitlines()
    assert len(lines) <= BUDGET.get(command, DEFAULT_BUDGET), f"{command} --help: {len(lines)} lines"
    assert "Examples:" in text and f"\n    sitemaps {command}" in text.replace("\n      ", "\n    "), text
    if command not in EVERY_GROUP:
        assert len(listed_groups(command)) < len(GROUPS), command


def test_every_settings_option_has_its_env_var_once() -> None:
    names = [opt for opt, _f, _kw in SHARED]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {field for _o, field, _kw in SHARED} <= fields
    text = help_text("run")
    for opt in names:
        assert "SITEMAPS_" + opt[2:].replace("-", "_").upper() in text.replace("\n", "").replace(" ", ""), opt


@dataclasses.dataclass
class Reads:
    """The Settings fields read since a command built its App (validating settings reads them all, before)."""

    seen: set[str] = dataclasses.field(default_factory=set)
    recording: bool = False

    def reset(self) -> None:
        self.seen.clear()
        self.recording = False


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    out = Reads()
    fields = {f.name for f in dataclasses.fields(Settings)}
    real_getattribute = Settings.__getattribute__
    real_init = App.__init__

    def getattribute(self: Settings, name: str) -> Any:
        if out.recording and name in fields:
            out.seen.add(name)
        return real_getattribute(self, name)

    def init(self: App, settings: Settings, read_only: bool = False) -> None:
        real_init(self, settings, read_only)
        out.recording = True

    monkeypatch.setattr(Settings, "__getattribute__", getattribute)
    monkeypatch.setattr(App, "__init__", init)
    yield out


def run(*args: str, env: dict[str, str], stdin: bytes | None = None) -> None:
    result = CliRunner().invoke(cli, list(args), input=stdin, env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)


# Arguments of each command on a site with one published generation (serve is left out: it serves for good).
RUNS = {
    "robots": [], "status": [], "publish": ["--full"], "prune": [], "rollback": [], "verify": [],
    "diff": [], "dead-letters": [], "apply": ["-"], "rebuild": ["--source", "-"], "hold": [], "resume": [],
}


@pytest.mark.parametrize("command", list(RUNS))
def test_listed_groups_are_read(command: str, tmp_path: Path, reads: Reads) -> None:
    env = {"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_BASE_URL": f"https://{HOST}/sitemaps/"}
    docs = b"".join(orjson.dumps({"section": "books", "key": str(i), "loc": f"https://{HOST}/b/{i}"}) + b"\n"
                    for i in range(20))
    for _ in range(2):  # two generations, for rollback
        run("rebuild", "--source", "-", env=env, stdin=docs)
    reads.reset()
    run(command, *RUNS[command], env=env, stdin=docs)
    groups = listed_groups(command)
    unread = {g.name for g in GROUPS if g.name in groups and not reads.seen & {f for _o, f, _kw in g.options}}
    assert not unread, f"`{command}` lists settings it never reads: {unread} (it read {sorted(reads.seen)})"
