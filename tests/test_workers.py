"""Worker pools fork from a server that has imported the product once (`snapshot.workers.PRELOAD`), so a publish's
pool starts without each worker importing SQLAlchemy and the rest again."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sitemap_keeper
from sitemap_keeper import snapshot
from sitemap_keeper.snapshot.workers import PRELOAD, worker_pool

# Evaluated in a worker by the builtin `eval`: unpickling it imports nothing, so it sees what the worker started with.
LOADED = "sorted(name for name in {names!r} if name in __import__('sys').modules)"


def test_workers_start_with_the_product_imported() -> None:
    names = [*PRELOAD, "sqlalchemy", "orjson"]
    with worker_pool(2) as pool:
        seen = list(pool.map(eval, [LOADED.format(names=names)] * 4))
    assert seen == [sorted(names)] * 4


COMMAND = """
from sitemap_keeper.snapshot.workers import worker_pool
if __name__ == "__main__":
    from sitemap_keeper import snapshot
    with worker_pool(1) as pool:
        print(snapshot.__file__, pool.submit(eval, "__import__('sitemap_keeper.snapshot').snapshot.__file__").result())
"""


@pytest.mark.parametrize("layout", ["script", "module"])
def test_workers_import_the_package_their_command_imported(tmp_path: Path, layout: str) -> None:
    """Python 3.11 starts the fork server with `python -c`, whose import path begins with the working directory,
    and imports PRELOAD before it takes the command's path. The workers must run the command's package all the
    same: the installed one for a console script run from a source checkout (the README's first command), the
    working directory's for `python -m` there."""
    package = tmp_path / "sitemap_keeper"
    if layout == "script":  # a checkout's tree in the working directory; the script's own directory comes first
        (package / "snapshot").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "snapshot" / "__init__.py").write_text("")
        decoy = "raise SystemExit('the working directory's tree was imported')\n"
        (package / "snapshot" / "rebuild.py").write_text(decoy)
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "command.py").write_text(COMMAND)
        argv, expected = [str(tmp_path / "bin" / "command.py")], Path(snapshot.__file__)
    else:  # `python -m` puts the working directory first: its copy of the package is the command's
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(Path(sitemap_keeper.__file__).parent, package, ignore=ignore)
        for name in ("snapshot", "incremental"):  # laid out as installed: the repository's folders inside the package
            folder = Path(str(importlib.import_module(f"sitemap_keeper.{name}").__file__)).parent
            shutil.copytree(folder, package / name, ignore=ignore)
        (tmp_path / "command.py").write_text(COMMAND)
        argv, expected = ["-m", "command"], package / "snapshot" / "__init__.py"
    out = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [Path(p) for p in out.stdout.split()] == [expected, expected]
