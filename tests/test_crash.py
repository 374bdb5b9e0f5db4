"""kill -9 at every step of publish (and of a rebuild): the live generation stays complete and valid."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from sitemap_keeper.snapshot.publish import STEPS
from tests.factories import HOST, TWO_SECTIONS, doc
from tests.support import Model, cli, read_site

BASE = "http://127.0.0.1:8080/sitemaps/"


def served_locally(data_dir: Path) -> dict[str, str | None]:
    """Read the site the way the web server would: through the `current` symlink, validating every file."""
    current = data_dir / "current"
    return read_site(lambda name: (current / name).read_bytes(), BASE).urls


def setup(tmp_path: Path, database_url: str, n: int, max_urls: int) -> tuple[dict[str, str], Model]:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": str(max_urls),
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    model = Model()
    docs = [doc(i, section=TWO_SECTIONS) for i in range(n)]
    (tmp_path / "src.jsonl").write_bytes(b"\n".join(orjson.dumps(d) for d in docs))
    cli("rebuild", "--source", str(tmp_path / "src.jsonl"), env=env)
    for d in docs:
        model.event(d)
    return env, model


def apply_changes(tmp_path: Path, env: dict[str, str], model: Model, seed: int, n: int) -> None:
    rnd = random.Random(seed)
    events: list[dict[str, object]] = []
    for j in range(n):
        i = rnd.randrange(len(model.versions) + 20)
        version = 100 * seed + j + 2
        if rnd.random() < 0.2:
            events.append({"op": "delete", "section": ("books", "authors")[i % 2], "key": str(i), "version": version})
        else:
            events.append(doc(i, version, TWO_SECTIONS, day=1 + (seed + j) % 28))
    path = tmp_path / f"events-{seed}.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    cli("apply", str(path), env=env)
    for e in events:
        model.event(e)


def test_kill_during_apply_loses_nothing_and_leaves_no_worker_behind(tmp_path: Path, database_url: str) -> None:
    """A batch big enough for the parsing workers, killed at its commit: the command ends (its workers do not
    outlive it holding its output: this call would time out), nothing of the batch is applied, and applying
    the file again applies all of it."""
    env, model = setup(tmp_path, database_url, n=100, max_urls=50)
    events = [{"op": "upsert", **doc(i, 2, TWO_SECTIONS, day=5)} for i in range(3000)]
    (tmp_path / "big.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    killed = cli(
        "apply", str(tmp_path / "big.jsonl"), env={**env, "SITEMAPS_KILL_AT": "apply-commit"}, check=False, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "nothing to publish" in cli("publish", env=env).stdout
    assert "applied 3000" in cli("apply", str(tmp_path / "big.jsonl"), env=env).stdout
    for e in events:
        model.event(e)
    cli("publish", env=env)
    assert served_locally(tmp_path / "data") == model.expected()


def test_kill_at_each_step_of_publish(tmp_path: Path, database_url: str) -> None:
    env, model = setup(tmp_path, database_url, n=400, max_urls=50)
    assert served_locally(tmp_path / "data") == model.expected()
    for seed, step in enumerate(STEPS, 1):
        before = model.expected()
        apply_changes(tmp_path, env, model, seed=seed, n=30)
        after = model.expected()
        killed = cli("publish", env={**env, "SITEMAPS_KILL_AT": step}, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        # The switch is the last step that changes what is served: before it the old site, after it the new.
        assert served_locally(tmp_path / "data") == (after if step == "switched" else before), step
        result = cli("publish", env=env).stdout
        assert ("nothing to publish" in result) == (step == "switched"), step
        assert served_locally(tmp_path / "data") == after, step
    cli("verify", "--deep", env=env)
    cli("prune", "--keep", "1", "--grace", "0", env=env)
    gens = os.listdir(tmp_path / "data" / "generations")
    assert gens == [os.readlink(tmp_path / "data" / "current").rsplit("/", 1)[1]]


@pytest.mark.parametrize("step", ["rebuild-load", "rebuild-swap"])
def test_kill_during_rebuild_leaves_manifest_and_site_alone(tmp_path: Path, database_url: str, step: str) -> None:
    env, model = setup(tmp_path, database_url, n=300, max_urls=50)
    env["SITEMAPS_MAX_SHRINK"] = "1"  # the rebuilds replace the site with a smaller one on purpose
    other = [doc(i, 5, TWO_SECTIONS, day=9) for i in range(1000, 1100)]
    (tmp_path / "other.jsonl").write_bytes(b"\n".join(orjson.dumps(d) for d in other))
    # Killed while its workers run (rebuild-load), the command's output still ends: its workers do not
    # outlive it holding its stdout and stderr (this call would time out).
    killed = cli(
        "rebuild",
        "--source",
        str(tmp_path / "other.jsonl"),
        env={**env, "SITEMAPS_KILL_AT": step},
        check=False,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    assert served_locally(tmp_path / "data") == model.expected()
    assert "nothing to publish" in cli("publish", env=env).stdout  # the manifest was not touched
    # The killed rebuild's lock died with it: events are applied at once, not held back for it.
    (tmp_path / "one.jsonl").write_bytes(orjson.dumps({"op": "upsert", **doc(7, 2, TWO_SECTIONS, day=3)}))
    applied = cli("apply", str(tmp_path / "one.jsonl"), env=env, timeout=60)
    assert "applied 1" in applied.stdout and "rebuild is running" not in applied.stderr
    cli("rebuild", "--source", str(tmp_path / "other.jsonl"), env=env)
    assert served_locally(tmp_path / "data") == {str(d["loc"]): str(d["lastmod"]) for d in other}


def test_kill_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL at random instants of full publishes (seeded: a failure replays with the same seed)."""
    seed = int(os.environ.get("SITEMAPS_CRASH_SEED", "7"))
    rounds = int(os.environ.get("SITEMAPS_CRASH_ROUNDS", "8"))
    rnd = random.Random(seed)
    env, model = setup(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", n=8_000, max_urls=200)
    for r in range(rounds):
        apply_changes(tmp_path, env, model, seed=seed * 100 + r, n=50)
        before_switch = served_locally(tmp_path / "data")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitemap_keeper", "publish", "--full"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rnd.uniform(0.1, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = served_locally(tmp_path / "data")
        assert seen in (before_switch, model.expected()), f"round {r} (seed {seed}): a half-published site"
    cli("publish", env=env)
    assert served_locally(tmp_path / "data") == model.expected()
    cli("verify", "--deep", env=env)
