"""The layers import downwards only: tools -> runtime -> service; models never imports stream_app.

A static check (the imports written in each module, including those inside functions), so an arrow
pointing upwards fails here before it tangles the flow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: package -> packages it must not import
FORBIDDEN = {
    "stream_app/service": ("stream_app.runtime", "stream_app.tools", "stream_app.cli", "faust", "aiokafka", "kafka"),
    "stream_app/runtime": ("stream_app.tools", "stream_app.cli"),
    "models": ("stream_app",),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_imports_point_down(package):
    assert modules_of(package), f"no modules under {package}"
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of(package)
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN[package])
    }
    assert not wrong, sorted(wrong)
