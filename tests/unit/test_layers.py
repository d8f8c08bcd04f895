"""The layering rule, read from the source: plangate_base imports none of the three packages, and
governance/ and ledger/ import neither worker/ nor each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("plangate", "plangate_base", "worker", "governance", "ledger")
ALLOWED = {
    "plangate_base": {"plangate_base"},
    "governance": {"governance", "plangate_base"},
    "ledger": {"ledger", "plangate_base"},
}


def _imported_packages(path: Path) -> set[str]:
    """The top-level names of our packages that a module imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(top for top in (name.split(".", 1)[0] for name in names) if top in OURS)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_lower_layer_imports_only_what_lies_below_it(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    wrong = {
        str(path.relative_to(ROOT)): sorted(extra)
        for path in modules
        if (extra := _imported_packages(path) - ALLOWED[package])
    }
    assert wrong == {}
