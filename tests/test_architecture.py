"""The house's import rules, read from the source with ``ast`` (nothing is imported):
no cycle among first-party modules, and ``search`` (the query-time core) imports none of the
packages built on it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("search", "indexer", "web", "cli", "training", "bench")
# what each package may import besides itself (docs/architecture.md)
ALLOWED = {
    "search": set(),
    "indexer": {"search"},
    "training": {"search"},
    "web": {"search", "indexer"},
    "bench": {"search", "indexer", "web"},
    "cli": {"search", "indexer", "web", "training", "bench"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path], name: str | None = None) -> set[str]:
    """First-party modules that module ``name`` (at ``path``) imports anywhere: inside
    functions and under ``if TYPE_CHECKING:`` too (a type checker follows those)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    # importing a.b.c first runs the packages a and a.b, unless the importer sits inside them
    inside = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
    return {m for m in found | (parents - inside) if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_no_first_party_import_cycle():
    assert cycles(import_graph()) == []


def test_packages_import_only_what_they_may():
    wrong = [
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        for dep in sorted(deps)
        if (src := mod.split(".")[0]) != (dst := dep.split(".")[0]) and dst not in ALLOWED[src]
    ]
    assert wrong == []


def test_only_the_store_touches_faiss():
    """Callers go through ``search.store.VectorStore``, so a second backend plugs in."""
    users = {
        name
        for name, path in first_party_modules().items()
        # bench measures the engine against raw FAISS
        if not name.startswith(("search.store", "bench"))
        and any(isinstance(n, ast.Import | ast.ImportFrom)
                and any((a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0] == "faiss"
                        for a in n.names)
                for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert users == set()


def environment_reads(path: Path) -> list[int]:
    """Lines that read a variable: ``os.environ.get``, ``os.getenv``, ``os.environ[...]``
    (setting one for a child process or a library is not reading)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        call = isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
        item = (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                and ast.unparse(node.value) == "os.environ")
        if call or item:
            lines.append(node.lineno)
    return lines


def test_only_settings_reads_the_environment():
    reads = {
        f"{module_name(path)}:{line}"
        for path in first_party_modules().values()
        if path != REPO / "search" / "settings.py"
        for line in environment_reads(path)
    }
    assert reads == set()


def test_the_checker_sees_cycles_and_forbidden_imports(tmp_path):
    """The walk finds what it must: a cycle, and imports hidden in a function or behind
    TYPE_CHECKING."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import web.app\n"
                   "def f():\n    from indexer import pipeline\n")
    modules = {"web.app": src, "indexer": src, "indexer.pipeline": src, "search.m": src}
    assert imports_of(src, modules, "search.m") == {"web.app", "indexer", "indexer.pipeline"}
    src.write_text("import os\na = os.environ.get('A')\nb = os.environ['B']\nos.environ['C'] = '1'\n")
    assert environment_reads(src) == [2, 3]
