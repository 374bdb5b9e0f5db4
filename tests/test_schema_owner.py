"""Every table of the manifest is defined in one module, snapshot/manifest/schema.py, so a column rename starts
there; the rest of the code reaches the tables through the manifest's named operations."""

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
    return (isinstance(func, ast.Name) and func.id == "Table") or (isinstance(func, ast.Attribute)
                                                                    and func.attr == "Table")


def test_tables_are_defined_only_in_the_schema_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                                      if defines_a_table(node)]
        for folder in ("snapshot", "incremental")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != SCHEMA and "__pycache__" not in path.parts
    }
    assert {path: lines for path, lines in offenders.items() if lines} == {}
    assert any(defines_a_table(node) for node in ast.walk(ast.parse(SCHEMA.read_text(encoding="utf-8"))))
