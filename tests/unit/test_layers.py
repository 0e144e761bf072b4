"""Layering that import-linter cannot express: `shared` never imports azure.functions."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_shared_never_imports_azure_functions() -> None:
    offenders = {
        str(path.relative_to(SHARED.parent)): sorted(
            m for m in imported_modules(path) if m.startswith("azure.functions")
        )
        for path in SHARED.rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
