"""The size rule for production code: no module over 400 lines, no function over 50.

Tests, migrations and bench/ are not production code. Run by `make lint` and `make test`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "receivers", "subscriptions", "scripts")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def production_modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts)
    )


def problems(path: Path) -> list[str]:
    text = path.read_text()
    name = path.relative_to(ROOT)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{name}:{node.lineno} {node.name}(): {length} lines"
                    f" (at most {MAX_FUNCTION_LINES})"
                )
    return found


def main() -> int:
    found = [problem for path in production_modules() for problem in problems(path)]
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
