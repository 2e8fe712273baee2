"""Structure of the package: no import cycle between lamfast's modules (imports inside
functions count), no module over 600 lines, and ``lamfast.label`` both a function and a
package."""

import ast
import importlib
import importlib.machinery
import subprocess
import sys
from pathlib import Path

from conftest import same_lamfast

import lamfast

ROOT = Path(lamfast.__file__).resolve().parent
MAX_LINES = 600
COMPILED_SUFFIXES = (".pyi", *importlib.machinery.EXTENSION_SUFFIXES)


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    assert "lamfast.infer" not in graph["lamfast.model"]       # the model knows nothing of predicting


def test_no_module_over_600_lines():
    long = {name: n for name, path in module_files().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


LABEL_NAMES = """
import sys
import lamfast.label.cli, lamfast.label.plan   # first imports: they must not rebind lamfast.label
import lamfast
from lamfast.label import LabelPlan, read_output
package = sys.modules["lamfast.label"]
assert callable(lamfast.label) and lamfast.label is package.label, lamfast.label
assert lamfast.label.__module__ == "lamfast.label.run"
assert package.plan is sys.modules["lamfast.label.plan"] and LabelPlan is package.plan.LabelPlan
assert read_output is sys.modules["lamfast.label.output"].read_output
print("ok")
"""


def test_label_is_the_function_and_a_package(tmp_path):
    """``lamfast.label(...)`` calls the function, ``from lamfast.label import read_output``
    and ``import lamfast.label.plan`` reach the package (in a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-c", LABEL_NAMES], capture_output=True, text=True,
                         **same_lamfast(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_graph_resolves_imports(tmp_path):
    """The parser of this test: relative and absolute imports, in functions too, a name
    imported from a package counts as that package unless it is a submodule."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n__version__ = '1'\n")
    (pkg / "a.py").write_text("def f():\n    from . import __version__\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import pkg.a\nfrom ..sub import c\n")
    (pkg / "sub" / "c.py").write_text("import importlib\nimportlib.import_module('pkg.a')\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg", "pkg.sub.b"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.a", "pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}}
    assert find_cycle(graph) in (["pkg", "pkg.a", "pkg"], ["pkg.a", "pkg", "pkg.a"])
    assert find_cycle({"x": {"y"}, "y": set()}) is None


# ---- the graph ----------------------------------------------------------------------------

def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package: its __init__.py)."""
    return {_dotted(path, root): path for path in sorted(root.rglob("*.py"))}


def _dotted(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).parts
    parts = parts[:-1] + (parts[-1].split(".")[0],)     # _core.cpython-311-x86_64-linux-gnu.so -> _core
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ``root`` it imports, anywhere in its code. Compiled
    modules (``_core``: an extension or its ``.pyi`` stub) are nodes without edges."""
    sources = module_files(root)
    compiled = {_dotted(p, root) for p in root.rglob("*") if p.name.endswith(COMPILED_SUFFIXES)}
    modules = set(sources) | compiled
    graph = {name: imported_modules(name, path, modules) for name, path in sources.items()}
    return graph | {name: set() for name in compiled - set(sources)}


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """``from P import x`` is an edge to module P.x if there is one, else to P (a name
    defined in P, or re-exported by P's __init__); ``import a.b`` is an edge to a.b;
    ``importlib.import_module("a.b")`` with a literal name too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (iterative DFS)."""
    state = dict.fromkeys(graph, 0)          # 0 unseen, 1 on the current path, 2 done
    for start in sorted(graph):
        if state[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_every_module_imports():
    """Each module imports (an import-time cycle would fail here too); one that needs an
    optional dependency this installation lacks (e.g. triton) is left out."""
    for name in module_files():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] == "lamfast":
                raise
