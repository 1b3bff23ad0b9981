"""core/io has one front door and no import cycle between its modules."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import scipion_deepalign.core.io as io

IO_DIR = Path(io.__file__).parent
PACKAGE = "scipion_deepalign.core.io"
MODULES = sorted(p.stem for p in IO_DIR.glob("*.py") if p.stem != "__init__")


def _io_imports(source: str) -> set[str]:
    """Modules of core/io that ``source`` imports (at top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith(PACKAGE + "."):
                found.add(node.module[len(PACKAGE) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PACKAGE) + 1:].split(".")[0] for a in node.names
                         if a.name.startswith(PACKAGE + "."))
    return found & set(MODULES)


def _cycle(graph: dict) -> list | None:
    """A cycle of ``graph`` (``{node: set of nodes}``) as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_io_modules_found():
    expected = {"columns", "images", "mrc", "regions", "star", "star_optics", "star_tables",
                "star_write"}
    assert expected <= set(MODULES)
    assert "starfile" not in MODULES  # would shadow the well-known `starfile` package


@pytest.mark.parametrize("module", MODULES)
def test_each_io_module_imports_first_in_a_fresh_interpreter(module):
    code = f"import {PACKAGE}.{module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=IO_DIR.parents[2], timeout=300)
    assert result.returncode == 0, result.stderr


def test_no_import_cycle_between_io_modules():
    graph = {m: _io_imports((IO_DIR / f"{m}.py").read_text()) for m in MODULES}
    assert _cycle(graph) is None, f"import cycle in core/io: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _io_imports("def f():\n    from .star import x\n") == {"star"}
    assert _io_imports(f"from {PACKAGE}.images import y\n") == {"images"}


def test_one_front_door():
    """Only core.io re-exports: each module's __all__ names what it defines itself."""
    for module in MODULES:
        mod = __import__(f"{PACKAGE}.{module}", fromlist=["__all__"])
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            assert getattr(obj, "__module__", mod.__name__) == mod.__name__, (module, name)
    for name in io.__all__:
        assert hasattr(io, name), name
