"""The type stub shipped beside the compiled core names exactly what the core exports."""

import ast
from pathlib import Path

import lamfast
from lamfast import _core


def test_stub_matches_the_compiled_module():
    stub = Path(lamfast.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    exported = {name for name in dir(_core) if not name.startswith("_")}
    assert declared == exported
