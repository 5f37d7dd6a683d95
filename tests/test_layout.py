"""The package's layers, checked on its source: no import cycles, and imports that run one way
(plugins -> engine -> codecs/config), so that a reader can tell the layers apart.

Imports under `if TYPE_CHECKING:` are left out: they name types for the checker and never run.
Imports inside functions count: they run, only later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"

#: what each part may import of the pipeline (beyond itself); a part is a top-level module or
#: package, or one engine module where the api may see only those
ALLOWED: dict[str, set[str]] = {
    "event": set(),
    "fileio": set(),
    "config": {"event", "plugin"},
    "codecs": {"event", "config"},
    "metrics": {"event", "config"},
    "plugin": {"event", "config"},
    "engine": {"event", "plugin", "buffer", "config", "codecs", "metrics"},
    "buffer": {"event", "fileio", "codecs", "config", "engine.ack", "engine.context"},
    "tail": {"event", "fileio", "codecs", "config", "engine", "metrics"},
    "parsers": {"event", "plugin", "config", "codecs", "engine", "metrics"},
    "sources": {"event", "plugin", "config", "codecs", "engine", "metrics", "parsers", "tail", "fileio", "sources"},
    "filters": {"event", "plugin", "config", "codecs", "engine", "metrics", "parsers"},
    # __init__: the version, for the User-Agent remote write asks senders to give
    "sinks": {"event", "plugin", "config", "codecs", "engine", "metrics", "fileio", "__init__"},
    "api": {"event", "config", "codecs", "metrics", "engine.figures", "engine.tagmatch", "engine.context"},
    "cli": {"event", "plugin", "config", "codecs", "engine", "metrics", "api", "parsers", "sinks", "__init__"},
    "__main__": {"cli"},
    "__init__": set(),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The pipeline modules `path` imports when it runs."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from pkg import name`, pkg
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, root, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def part_of(module: str) -> str:
    rest = module.split(".")[1:] or ["__init__"]
    return rest[0]


def allowed(importer: str, imported: str) -> bool:
    part = part_of(importer)
    target = imported.split(".", 1)[1] if "." in imported else "__init__"
    if part_of(imported) == part:
        return True
    return any(target == a or target.startswith(a + ".") for a in ALLOWED[part])


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} imports {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if not allowed(a, b)]


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_run_one_way():
    assert wrong_way(import_graph()) == []


def test_every_part_of_the_package_has_its_rule():
    assert {part_of(m) for m in import_graph()} <= set(ALLOWED)


def test_at_most_ten_modules_at_the_top():
    assert len(list(PACKAGE.glob("*.py"))) <= 10


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pipeline"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_deliberate_cycle_is_found(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "engine/__init__.py": "",
        "engine/runtime.py": "from ..api.server import start_api\n",
        "api/__init__.py": "",
        "api/server.py": "def f():\n    from ..engine import runtime\n",
    })
    graph = import_graph(root)
    assert cycles(graph) == [["pipeline.api.server", "pipeline.engine.runtime"]]
    assert "pipeline.engine.runtime imports pipeline.api.server" in wrong_way(graph)


def test_type_checking_imports_are_not_edges(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "plugin.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .engine.context import Context\n",
        "engine/__init__.py": "",
        "engine/context.py": "from ..plugin import x\n",
    })
    assert cycles(import_graph(root)) == []


@pytest.mark.parametrize("importer, imported", [
    ("pipeline.codecs.formats", "pipeline.engine.context"),
    ("pipeline.engine.runtime", "pipeline.sources.tail"),
    ("pipeline.api.server", "pipeline.engine.runtime"),
    ("pipeline.config.graph", "pipeline.api.server"),
])
def test_an_upward_import_is_wrong_way(importer, imported):
    assert not allowed(importer, imported)
