from collections.abc import Callable
from typing import Any

from sitemap_keeper.snapshot.render import DocumentRow

def row(
    obj: Any, allowed_hosts: frozenset[str], strict: bool = True, max_size: int | None = None
) -> DocumentRow | None: ...
def rows(
    items: list[Any],
    start: int,
    allowed_hosts: frozenset[str],
    loads: Callable[[bytes], Any],
    by_section: dict[str, list[tuple[Any, ...]]],
    strict: bool = True,
    max_size: int | None = None,
) -> int: ...
