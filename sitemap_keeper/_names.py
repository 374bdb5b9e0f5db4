"""One import name per module: the folders `snapshot/` and `incremental/` sit at the repository's top, so from a
checkout they could also be imported bare (`import snapshot`), loading every module a second time under a second
name (two Manifest classes, two sets of module state). Their `__init__` refuses that."""


def refuse_bare_import(name: str, expected: str) -> None:
    """Raise ImportError unless the package importing this is `expected`."""
    if name != expected:
        raise ImportError(f"import {expected}, not {name}: this folder is installed as {expected}")
