"""The package's layers hold: no module imports one above it, and none hides an import.

CI runs import-linter on the layers written in pyproject.toml (``lint-imports``); an import
inside a function is how a cycle gets hidden from a reader, so none is allowed in the package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "feeds"


def nested_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of the package made inside a function or class body."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if (
                nested
                and isinstance(child, ast.ImportFrom)
                and (child.level > 0 or (child.module or "").startswith("feeds"))
            ):
                found.append((child.lineno, "." * child.level + (child.module or "")))
            if nested and isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] == "feeds")
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def test_the_check_finds_an_import_hidden_in_a_function() -> None:
    source = "from . import a\n\ndef f():\n    from .b import c\n    import feeds.d\n    import json\n"
    assert nested_imports(source) == [(4, ".b"), (5, "feeds.d")]


def test_no_module_of_the_package_imports_inside_a_function() -> None:
    hidden = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in nested_imports(path.read_text(encoding="utf-8"))
    ]
    assert not hidden, (
        "imports inside functions (put them at the top; a cycle means a layer is wrong):\n"
        + "\n".join(hidden)
    )


def test_the_layers_contract_is_kept() -> None:
    """What ``lint-imports`` checks in CI, here too where import-linter is installed (in a process of
    its own: it changes the logging set-up of the process it runs in)."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is a dev dependency (CI installs it)")
    done = subprocess.run([str(lint)], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
