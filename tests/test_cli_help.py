"""Each command's --help is short and lists only the settings groups its code reads (incremental/cli/options.py).

The groups a command declares are checked against the `Settings` fields it actually reads while it runs on a
small published site: a group none of whose fields is read has no business in that command's help. A command's
help names its settings, by group; `sitemaps settings` describes each of them once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.cli import COMMANDS, cli
from sitemap_keeper.incremental.cli.options import GROUPS, SHARED, STORE, Setting, envvar
from sitemap_keeper.incremental.cli.settings import ABOUT
from sitemap_keeper.incremental.settings import ServiceSettings
from sitemap_keeper.snapshot.settings import Settings
from tests.support import cli as cli_process

HOST = "librer.io"
# The commands that serve or consume for good use every group (they publish, prune and serve probes).
EVERY_GROUP = {"run", "replay", "demo"}
# Lines of --help at most: about 150 for every command before the groups, 176 for run and 182 for replay before
# `sitemaps settings` described the settings the help now only names.
BUDGET = {"robots": 30, "dead-letters": 25, "apply": 45, "publish": 40, **dict.fromkeys(EVERY_GROUP, 80)}
DEFAULT_BUDGET = 60


def help_text(command: str) -> str:
    return output(command, "--help")


def output(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def settings_block(text: str) -> dict[str, list[str]]:
    """The Settings section of a command's --help: group -> the option names on its row, in order."""
    section = text.partition("\nSettings:\n")[2]
    rows = re.findall(r"^  (\w+) +(--[\w-]+(?:,\s+--[\w-]+)*)$", section, re.M)
    return {group: re.findall(r"--[\w-]+", names) for group, names in rows}


def listed_groups(command: str) -> set[str]:
    return set(settings_block(help_text(command)))


def squashed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_short_with_examples(command: str) -> None:
    text = help_text(command)
    lines = text.splitlines()
    assert len(lines) <= BUDGET.get(command, DEFAULT_BUDGET), f"{command} --help: {len(lines)} lines"
    assert "Examples:" in text and f"\n    sitemaps {command}" in text.replace("\n      ", "\n    "), text
    if command not in EVERY_GROUP:
        assert len(listed_groups(command)) < len(GROUPS), command


def settings_params(command: str) -> list[Setting]:
    """The settings options a command really has (what it parses), in order."""
    sub = cli.get_command(click.Context(cli), command)
    assert sub is not None
    return [p for p in sub.params if isinstance(p, Setting)]


def test_settings_describes_every_setting_once_with_its_env_var() -> None:
    names = [opt for opt, _f, _kw in SHARED]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(ServiceSettings)}
    assert {field for _o, field, _kw in SHARED} <= fields
    text = output("settings")
    flat = squashed(text)
    for opt, _field, kw in SHARED:
        assert len(re.findall(rf"^  {opt} ", text, re.M)) == 1, opt
        assert len(re.findall(rf"envvar:{envvar(opt)}(?![A-Z_])", flat)) == 1, opt
        assert squashed(kw["help"]) in flat, opt
    # what the commands parse is what is described: the same options, with the same variables
    for param in settings_params("run"):
        assert param.opts[0] in names and f"envvar:{param.envvar}" in flat, param.opts
    assert set(ABOUT) == {g.name for g in GROUPS}
    assert all(g.name in help_text("settings") for g in GROUPS)


def test_settings_of_one_group_and_who_reads_them() -> None:
    text = output("settings", "store")
    assert {opt for opt in re.findall(r"^  (--[\w-]+)", text, re.M)} == {o for o, _f, _kw in STORE.options}
    readers = re.search(r"read by +(.*?)\n  --", text, re.S)
    assert readers, text
    expected = [c for c in COMMANDS if any(p.group == "store" for p in settings_params(c))]
    assert expected and re.split(r",\s+", readers.group(1)) == expected, text
    assert expected == [c for c in COMMANDS if "store" in listed_groups(c)]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_names_settings_without_describing_them(command: str) -> None:
    text = help_text(command)
    block = settings_block(text)
    params = settings_params(command)
    assert block == {g.name: [o for o, _f, _kw in g.options] for g in GROUPS if g.name in block}, text
    assert [o for names in block.values() for o in names] == [p.opts[0] for p in params], text
    options = squashed(text.partition("\nSettings:\n")[0])
    for opt, _field, kw in SHARED:
        assert not re.search(rf"envvar:{envvar(opt)}[;\]]", options) and squashed(kw["help"]) not in options, (
            command,
            opt,
        )
    for param in params:
        assert not re.search(rf"^  {param.opts[0]} ", text, re.M), (command, param.opts)
    if params:
        assert "`sitemapssettingsGROUP`" in squashed(text), text


def test_settings_of_an_unknown_group_fails_in_one_line() -> None:
    proc = cli_process("settings", "bogus", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc
    assert "'bogus' is not one of 'manifest'" in lines[0] and proc.stdout == "", proc


def test_a_bad_setting_is_named() -> None:
    for args, env in ((["--max-urls", "lots"], {}), ([], {"SITEMAPS_MAX_URLS": "lots"})):
        proc = cli_process("publish", *args, env=env, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "'--max-urls'" in lines[0], proc


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
    fields = {f.name for f in dataclasses.fields(ServiceSettings)}
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
    "robots": [],
    "status": [],
    "publish": ["--full"],
    "prune": [],
    "rollback": [],
    "verify": [],
    "diff": [],
    "dead-letters": [],
    "apply": ["-"],
    "rebuild": ["--source", "-"],
    "hold": [],
    "resume": [],
}


@pytest.mark.parametrize("command", list(RUNS))
def test_listed_groups_are_read(command: str, tmp_path: Path, reads: Reads) -> None:
    env = {"SITEMAPS_DATA_DIR": str(tmp_path / "data"), "SITEMAPS_BASE_URL": f"https://{HOST}/sitemaps/"}
    docs = b"".join(
        orjson.dumps({"section": "books", "key": str(i), "loc": f"https://{HOST}/b/{i}"}) + b"\n" for i in range(20)
    )
    for _ in range(2):  # two generations, for rollback
        run("rebuild", "--source", "-", env=env, stdin=docs)
    reads.reset()
    run(command, *RUNS[command], env=env, stdin=docs)
    groups = listed_groups(command)
    unread = {g.name for g in GROUPS if g.name in groups and not reads.seen & {f for _o, f, _kw in g.options}}
    assert not unread, f"`{command}` lists settings it never reads: {unread} (it read {sorted(reads.seen)})"
