"""Every table of the manifest is defined in one module, snapshot/manifest/schema.py, so a column rename starts
there; the rest of the code reaches the tables through the manifest's named operations: no module outside
snapshot/manifest/ imports a table (save the listed exceptions)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "snapshot" / "manifest" / "schema.py"


def defines_a_table(node: ast.AST) -> bool:
    """A call of sqlalchemy's Table (bare or as `sqlalchemy.Table`)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Table") or (
        isinstance(func, ast.Attribute) and func.attr == "Table"
    )


def test_tables_are_defined_only_in_the_schema_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): [
            node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if defines_a_table(node)
        ]
        for folder in ("snapshot", "incremental")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != SCHEMA and "__pycache__" not in path.parts
    }
    assert {path: lines for path, lines in offenders.items() if lines} == {}
    assert any(defines_a_table(node) for node in ast.walk(ast.parse(SCHEMA.read_text(encoding="utf-8"))))


MANIFEST = ROOT / "snapshot" / "manifest"
SCHEMA_MODULE = "sitemap_keeper.snapshot.manifest.schema"
# Modules outside the manifest package still allowed a table of the schema, each with the reason:
TABLE_USERS: dict[str, str] = {}


def tables_of_the_schema() -> set[str]:
    """The names of the schema module that are tables or make them (a name of `schema.py` bound to a Table, or
    a function of it annotated to return one)."""
    found: set[str] = set()
    for node in ast.parse(SCHEMA.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and defines_a_table(node.value):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.FunctionDef) and isinstance(node.returns, ast.Name) and node.returns.id == "Table":
            found.add(node.name)
    return found


def schema_tables_imported(tree: ast.AST, tables: set[str]) -> list[str]:
    """The tables a module imports from the schema module (the module itself counts as every table)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == SCHEMA_MODULE:
            found += [alias.name for alias in node.names if alias.name in tables or alias.name == "*"]
        elif isinstance(node, ast.ImportFrom) and node.module == SCHEMA_MODULE.rpartition(".")[0]:
            found += ["schema" for alias in node.names if alias.name == "schema"]
        elif isinstance(node, ast.Import):
            found += ["schema" for alias in node.names if alias.name == SCHEMA_MODULE]
    return found


def test_only_the_manifest_package_imports_tables() -> None:
    """The code outside snapshot/manifest/ speaks to the tables through the package's named operations (tests
    and bench/ may read the tables to check what the code did)."""
    tables = tables_of_the_schema()
    assert {"documents", "loc_owners", "news_articles", "news_articles_staging"} <= tables
    offenders = {
        str(path.relative_to(ROOT)): imported
        for folder in ("snapshot", "incremental", "sitemap_keeper")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if MANIFEST not in path.parents
        and "__pycache__" not in path.parts
        and (imported := schema_tables_imported(ast.parse(path.read_text(encoding="utf-8")), tables))
    }
    assert {path: names for path, names in offenders.items() if path not in TABLE_USERS} == {}
    assert set(TABLE_USERS) <= set(offenders), "an exception no longer needed: take it out of TABLE_USERS"
