"""The suite's own rules: every test module declares its layer, and every test checks something."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
LAYERS = {"unit", "integration", "e2e"}
MODULES = sorted(TESTS.rglob("test_*.py"))


def _layer(tree: ast.Module) -> str | None:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets)
            and isinstance(node.value, ast.Attribute)
        ):
            return node.value.attr
    return None


def _checks_something(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An assert, pytest.raises/warns/fail, or a call of a helper named assert_*/_assert_*."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Attribute) and node.attr in {"raises", "warns", "fail"}:
            return True
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            if name.lstrip("_").startswith("assert"):
                return True
    return False


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(TESTS)))
def test_module_declares_its_layer(path: Path) -> None:
    layer = _layer(ast.parse(path.read_text()))
    assert layer in LAYERS, f"{path.name}: add `pytestmark = pytest.mark.<{'|'.join(sorted(LAYERS))}>`"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(TESTS)))
def test_every_test_asserts_something(path: Path) -> None:
    tree = ast.parse(path.read_text())
    silent = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test")
        and not _checks_something(node)
    ]
    assert not silent, f"{path.name}: tests that check nothing: {', '.join(silent)}"
