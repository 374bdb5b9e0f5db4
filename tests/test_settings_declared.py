"""Every SITEMAPS_* variable the code reads is declared in one place, every setting's default is written once
(in its dataclass field), and every setting is documented: `sitemaps settings` and the README or docs/.

The code is read, not run: an option declared (`option("--x")`, a settings group's `("--x", "x", {...})`) or a
variable named (`"SITEMAPS_X"` as a whole string: `envvar=`, `os.environ.get`) counts as a declaration.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from sitemap_keeper.incremental.cli import COMMANDS, RENAMED_VARIABLES, cli
from sitemap_keeper.incremental.cli.options import GROUPS, envvar
from sitemap_keeper.incremental.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"SITEMAPS_[A-Z0-9_]+")
FIELDS = {f.name for f in dataclasses.fields(ServiceSettings)}
# Read by the crash harness only (tests/harness/crash.py), documented in docs/reliability.md.
TEST_HOOKS = {"SITEMAPS_KILL_AT"}


def code_files() -> Iterator[Path]:
    for folder in ("snapshot", "incremental", "sitemap_keeper"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def option_calls(tree: ast.AST) -> Iterator[ast.Call]:
    """Calls of `option(...)` (incremental/cli/options.py) and `click.option(...)`."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("--")
        ):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "option") or (
                isinstance(func, ast.Attribute) and func.attr == "option"
            ):
                yield node


def group_entries(tree: ast.AST) -> Iterator[tuple[str, str, ast.Dict]]:
    """The settings groups' entries: ("--option", "field", {click keyword arguments})."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and len(node.elts) == 3 and isinstance(node.elts[2], ast.Dict):
            opt, field = node.elts[0], node.elts[1]
            if (
                isinstance(opt, ast.Constant)
                and isinstance(opt.value, str)
                and opt.value.startswith("--")
                and isinstance(field, ast.Constant)
                and isinstance(field.value, str)
            ):
                yield opt.value, field.value, node.elts[2]


def declarations() -> Counter[str]:
    found: Counter[str] = Counter()
    for path in code_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                found[node.value] += 1
        for call in option_calls(tree):
            if isinstance(call.func, ast.Name):  # option(): the variable is derived from the name
                name = call.args[0].value  # type: ignore[attr-defined]
                found[envvar(name.split("/")[0])] += 1
        for opt, _field, _kw in group_entries(tree):
            found[envvar(opt)] += 1
    # the table of renamed variables names both the retired and the new name: neither is a declaration
    found.subtract(list(RENAMED_VARIABLES) + list(RENAMED_VARIABLES.values()))
    return +found


def cli_variables() -> dict[str, set[str]]:
    """Variable -> the commands whose options read it ("sitemaps" for the global options)."""
    ctx = click.Context(cli)
    out: dict[str, set[str]] = {}
    for command, params in [("sitemaps", cli.params)] + [
        (c, cli.get_command(ctx, c).params)  # type: ignore[union-attr]
        for c in COMMANDS
    ]:
        for p in params:
            if isinstance(p, click.Option) and isinstance(p.envvar, str):
                out.setdefault(p.envvar, set()).add(command)
    return out


def documents() -> str:
    return "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def test_every_variable_is_declared_once() -> None:
    found = declarations()
    assert {name: n for name, n in found.items() if n != 1} == {}
    # the scan sees what the command line really reads
    assert set(cli_variables()) - set(found) == set()


def test_every_setting_and_global_option_is_described_and_documented() -> None:
    settings = {envvar(opt) for g in GROUPS for opt, _f, _kw in g.options}
    global_ = {p.envvar for p in cli.params if isinstance(p, click.Option) and isinstance(p.envvar, str)}
    assert "SITEMAPS_LOG_LEVEL" in global_
    described = CliRunner().invoke(cli, ["settings"], terminal_width=200).output
    assert sorted((settings | global_) - set(re.findall(NAME, described))) == []
    # read from the environment directly, with no option: documented all the same
    env_only = set(declarations()) - set(cli_variables())
    assert env_only - TEST_HOOKS == set(), "a variable read with no option: make it one, or document it here"
    text = documents()
    assert sorted(n for n in settings | global_ | TEST_HOOKS if n not in text) == []


def test_every_command_option_shows_its_variable() -> None:
    """A command's own options are described by its --help, their variables included."""
    ctx = click.Context(cli)
    for command in COMMANDS:
        sub = cli.get_command(ctx, command)
        assert sub is not None
        hidden = [p.name for p in sub.params if isinstance(p, click.Option) and p.envvar and not p.show_envvar]
        assert hidden == [], command


def test_a_settings_default_is_written_once() -> None:
    """In its field (snapshot/settings.py, incremental/settings.py): the groups' options give none, and an option
    of a command that sets a settings field takes the field's default (`option_default`), never a literal."""
    offenders = []
    for path in code_files():
        tree = ast.parse(path.read_text(), str(path))
        for opt, field, kw in group_entries(tree):
            if any(isinstance(k, ast.Constant) and k.value == "default" for k in kw.keys):
                offenders.append(f"{path.name}: {opt} gives a default: it is the field's ({field})")
        for call in option_calls(tree):
            names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = next(
                (n for n in names if not n.startswith("-")), names[0].split("/")[0].lstrip("-").replace("-", "_")
            )
            default = next((k.value for k in call.keywords if k.arg == "default"), None)
            if dest in FIELDS and default is not None and not isinstance(default, ast.Call | ast.Name):
                offenders.append(f"{path.name}: {names[0]} writes the default of setting {dest} again")
    assert offenders == []
