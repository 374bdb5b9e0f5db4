"""Worker pools fork from a server that has imported the product once (`snapshot.workers.PRELOAD`), so a publish's
pool starts without each worker importing SQLAlchemy and the rest again."""

from __future__ import annotations

from snapshot.workers import PRELOAD, worker_pool

# Evaluated in a worker by the builtin `eval`: unpickling it imports nothing, so it sees what the worker started with.
LOADED = "sorted(name for name in {names!r} if name in __import__('sys').modules)"


def test_workers_start_with_the_product_imported() -> None:
    names = [*PRELOAD, "sqlalchemy", "orjson"]
    with worker_pool(2) as pool:
        seen = list(pool.map(eval, [LOADED.format(names=names)] * 4))
    assert seen == [sorted(names)] * 4
