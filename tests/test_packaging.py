"""The installed distribution: one top-level package, `sitemap_keeper`, so the project installs beside the SEO
stack (Scrapy depends on Twisted, whose versioning package is the top-level `incremental`), one import name per
module, the layering rule, and the wheel and sdist builds."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
DISTRIBUTION = PYPROJECT["project"]["name"]


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name an `import` or `from ... import` in `path` names; a relative import in the
    package's own folders fails (the package names its modules in full, which the checks below rely on)."""
    package = path.relative_to(ROOT).parts[0] in PACKAGE_DIR.values()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not (package and node.level), f"{path}: relative import"
            if node.level:
                continue
            names.add(node.module or "")
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_snapshot_never_imports_incremental() -> None:
    """`snapshot` is all a one-shot command needs; `incremental` (events, the service, the CLI) builds on it."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imported_modules(path) if n.startswith(("incremental", "sitemap_keeper.incremental"))
        )
        for path in python_files("snapshot")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_snapshot_loads_without_incremental() -> None:
    """The same rule at run time: importing every module of snapshot loads none of incremental."""
    modules = [
        ".".join(("sitemap_keeper", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        for p in python_files("snapshot")
    ]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('sitemap_keeper.incremental')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def loaded_by(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of `prefixes` that importing `modules` loads, in a fresh interpreter."""
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return list(ast.literal_eval(out.stdout.strip()))


def test_routers_load_without_the_s3_store() -> None:
    """Siblings do not lean on siblings: the Kubernetes routers share the bucket layout and the backoff with the
    S3 store (snapshot/layout.py, snapshot/calls.py), and load neither the store nor its S3 client."""
    routers = [f"sitemap_keeper.snapshot.routers.{name}" for name in ("kube", "ingress", "httproute", "local")]
    assert loaded_by(routers, ("minio", "sitemap_keeper.snapshot.stores.s3")) == []


def test_rebuild_loads_without_publish() -> None:
    """A rebuild's refusals live beside publish's (snapshot/refusals.py): rebuild does not import publish."""
    assert loaded_by(["sitemap_keeper.snapshot.rebuild"], ("sitemap_keeper.snapshot.publish",)) == []


def test_rebuild_loads_no_kafka_client() -> None:
    """`sitemaps rebuild` reads a file or a database: the Kafka client (about 0.1 s to import) is not loaded."""
    assert loaded_by(["sitemap_keeper.incremental.cli.rebuild"], ("kafka",)) == []


def test_no_module_names_the_package_by_its_bare_folder() -> None:
    """Every import of the project's own code goes through `sitemap_keeper.`: a bare `snapshot.x` would load the
    module a second time under a second name (or fail once installed)."""
    bare = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imported_modules(path) if n.split(".")[0] in ("snapshot", "incremental")
        )
        for folder in ("snapshot", "incremental", "sitemap_keeper", "tests", "bench")
        for path in python_files(folder)
    }
    assert {path: names for path, names in bare.items() if names} == {}


@pytest.mark.parametrize("folder", ["snapshot", "incremental"])
def test_a_folder_imported_bare_is_refused(folder: str) -> None:
    """From a checkout the folders sit in the working directory; importing one bare says what to import instead."""
    out = subprocess.run(
        [sys.executable, "-c", f"import {folder}"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 1
    assert f"ImportError: import sitemap_keeper.{folder}, not {folder}" in out.stderr.splitlines()[-1]


def test_pyproject_lists_every_package_folder() -> None:
    """pyproject.toml lists the packages by hand (package-dir maps folders to names): a new subpackage folder left
    out of the list would be missing from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = set()
    for name, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                on_disk.add(".".join((name, *init.parent.relative_to(ROOT / folder).parts)))
    assert listed == on_disk
    assert set(PACKAGE_DIR) == {"sitemap_keeper", "sitemap_keeper.snapshot", "sitemap_keeper.incremental"}


def test_license_file_matches_pyproject() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")


@pytest.mark.parametrize("argv", [["-m", "sitemap_keeper"], ["-m", "sitemap_keeper.incremental.cli"]])
def test_python_dash_m_runs_the_command(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, *argv, "--version"], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"sitemaps ({DISTRIBUTION}) "), out.stdout
    assert out.stdout.rstrip().endswith("C fast path loaded"), out.stdout


# --------------------------------------------------------------------------- installed in venvs of their own


class Venv:
    def __init__(self, path: Path) -> None:
        venv.create(path, with_pip=True)
        self.path = path
        self.bin = path / "bin"
        self.pip("install", "-q", "-U", "pip")

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        full_env.update(env or {})
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=self.path, env=full_env)
        assert out.returncode == 0, f"{argv}: {out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    def pip(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / "python"), "-m", "pip", "--disable-pip-version-check", *args, env=env)

    def python(self, code: str) -> str:
        return self.run(str(self.bin / "python"), "-c", code).stdout

    def installed_files(self, distribution: str) -> list[str]:
        code = f"import importlib.metadata as m\nfor f in m.files({distribution!r}) or []: print(f)"
        return self.python(code).split()


def assert_both_work(env: Venv) -> None:
    """Scrapy runs, Twisted's `incremental` is Twisted's, and `sitemaps` runs: nothing overwrote anything."""
    assert env.run(str(env.bin / "scrapy"), "version").stdout.startswith("Scrapy ")
    assert env.python("from incremental import Version; print(Version.__module__)").strip() == "incremental"
    out = env.run(str(env.bin / "sitemaps"), "--version").stdout
    assert out.startswith(f"sitemaps ({DISTRIBUTION}) "), out
    files = env.installed_files(DISTRIBUTION)
    tops = {f.split("/")[0] for f in files if f.endswith(".py")}
    assert tops == {"sitemap_keeper"}, tops
    for name in (
        "sitemap_keeper/snapshot/manifest/__init__.py",
        "sitemap_keeper/incremental/cli/__init__.py",
        "sitemap_keeper/py.typed",
        "sitemap_keeper/snapshot/_fastrow.pyi",
    ):
        assert name in files, name


@pytest.mark.slow
@pytest.mark.parametrize("order", ["project-first", "scrapy-first"])
def test_installs_beside_scrapy_in_either_order(tmp_path: Path, order: str) -> None:
    env = Venv(tmp_path / "venv")
    steps = [[str(ROOT)], ["scrapy"]]
    for step in steps if order == "project-first" else steps[::-1]:
        env.pip("install", "-q", *step)
    assert_both_work(env)
    # Reinstalling either one leaves the other whole, and so does removing this project.
    env.pip("install", "-q", "--force-reinstall", "--no-deps", str(ROOT))
    assert_both_work(env)
    env.pip("uninstall", "-y", DISTRIBUTION)
    assert env.python("from incremental import Version; print('ok')").strip() == "ok"


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_sdist_installs_without_a_compiler(tmp_path: Path) -> None:
    env = Venv(tmp_path / "venv")
    env.pip("install", "-q", "build")
    dist = tmp_path / "dist"
    env.run(str(env.bin / "python"), "-m", "build", "--outdir", str(dist), str(ROOT))
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [p.name.split("-")[0] for p in wheels + sdists] == ["sitemap_keeper", "sitemap_keeper"]
    # The sdist without a C compiler: the optional extension is skipped, the install succeeds, and the
    # command says the fast path is not there.
    env.pip("install", "-q", "--no-cache-dir", str(sdists[0]), env={"CC": "/bin/false", "LDSHARED": "/bin/false"})
    out = env.run(str(env.bin / "sitemaps"), "--version").stdout
    assert out.rstrip().endswith("C fast path not built (the Python code renders, several times slower)"), out
    files = env.installed_files(DISTRIBUTION)
    assert not [f for f in files if f.startswith(("snapshot/", "incremental/"))]
    assert "LICENSE" in {Path(f).name for f in files}
    # The wheel (built where a compiler is) carries the extension.
    env.pip("install", "-q", "--force-reinstall", "--no-deps", str(wheels[0]))
    assert env.run(str(env.bin / "sitemaps"), "--version").stdout.rstrip().endswith("C fast path loaded")
