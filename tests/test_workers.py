"""Worker pools fork from a server that has imported the product once (`snapshot.workers.PRELOAD`), so a publish's
pool starts without each worker importing SQLAlchemy and the rest again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import snapshot
from snapshot.workers import PRELOAD, worker_pool

# Evaluated in a worker by the builtin `eval`: unpickling it imports nothing, so it sees what the worker started with.
LOADED = "sorted(name for name in {names!r} if name in __import__('sys').modules)"


def test_workers_start_with_the_product_imported() -> None:
    names = [*PRELOAD, "sqlalchemy", "orjson"]
    with worker_pool(2) as pool:
        seen = list(pool.map(eval, [LOADED.format(names=names)] * 4))
    assert seen == [sorted(names)] * 4


def test_workers_run_the_command_s_package_not_one_in_its_working_directory(tmp_path: Path) -> None:
    """Run from a source checkout (the README's first command), the workers must run the installed package,
    not the tree in the working directory: Python 3.11 starts the fork server with `python -c`, whose import
    path begins with the working directory, and imports PRELOAD there before it takes the command's path."""
    decoy = tmp_path / "snapshot"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "rebuild.py").write_text("raise SystemExit('the decoy was imported')\n")
    script = tmp_path / "bin" / "command.py"  # like a console script: its own directory, not the cwd, comes first
    script.parent.mkdir()
    script.write_text(
        "from snapshot.workers import worker_pool\n"
        "if __name__ == '__main__':\n"
        "    with worker_pool(1) as pool:\n"
        "        print(pool.submit(eval, \"__import__('snapshot').__file__\").result())\n")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == Path(snapshot.__file__)
