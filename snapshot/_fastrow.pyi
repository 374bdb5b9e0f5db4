from typing import Any

from snapshot.render import DocumentRow

def row(obj: Any, allowed_hosts: frozenset[str]) -> DocumentRow | None: ...
