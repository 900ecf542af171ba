"""The package's layering: no import cycles between modules, and no oversized module.

Every ``import`` in ``src/visionkit`` counts, at the top of a module or inside a function
(a lazy import is still a dependency); only imports under ``if TYPE_CHECKING:`` do not.
``docs/architecture.md`` describes the layers these tests keep apart.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "visionkit"
MAX_LINES = 600


def _modules(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted((source / package).rglob("*.py")):
        parts = path.relative_to(source).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield from _imports_in(other)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module ``from ... import`` names, with relative imports made absolute."""
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _dependencies(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports.

    ``import a.b`` and ``from a.b import c`` (``c`` not a module) depend on ``a.b`` only,
    not on the ``__init__`` of ``a``; ``from a import b`` with ``b`` a module depends on
    ``a.b``.
    """
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
            continue
        source = _absolute(node, name, is_package)
        for alias in node.names:
            if f"{source}.{alias.name}" in modules:
                found.add(f"{source}.{alias.name}")
            elif source in modules:
                found.add(source)
    found.discard(name)
    return found


def _graph(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports."""
    modules = _modules(source, package)
    return {name: _dependencies(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of modules."""
    cycles = []
    for group in _strongly_connected(graph):
        if len(group) > 1:
            start = min(group)
            cycles.append(_shortest_cycle(graph, start, group))
    return sorted(cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _shortest_cycle(graph: dict[str, set[str]], start: str, group: set[str]) -> list[str]:
    """Breadth-first from ``start`` back to itself, inside ``group``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def test_the_graph_counts_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from pkg import a\n",
        "pkg/a.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg import b\n"
            "def f():\n    from pkg.sub import c\n"
        ),
        "pkg/b.py": "import pkg.a\nimport os\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from pkg.b import name\nfrom . import d\n",
        "pkg/sub/d.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph = _graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},  # from pkg import a: the submodule
        "pkg.a": {"pkg.sub.c"},  # inside a function; pkg.b only under TYPE_CHECKING
        "pkg.b": {"pkg.a"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.b", "pkg.sub.d"},  # not pkg's or pkg.sub's __init__
        "pkg.sub.d": set(),
    }
    assert _cycles(graph) == [["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]]


def test_no_module_imports_itself_back() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    groups = {min(group): sorted(group) for group in _strongly_connected(graph) if len(group) > 1}
    listing = "\n".join(
        f"  {' -> '.join(cycle)}\n    (modules in this cycle: {', '.join(groups[cycle[0]])})"
        for cycle in cycles
    )
    assert not cycles, (
        f"{len(cycles)} import cycle(s) between modules of {PACKAGE} (lazy imports count; only "
        f"imports under 'if TYPE_CHECKING:' do not):\n{listing}\nMove what both sides need "
        "into a module below both (see docs/architecture.md)"
    )


def test_no_module_is_over_600_lines() -> None:
    sizes = {
        path.relative_to(SOURCE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in _modules().values()
    }
    over = {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_LINES}
    assert not over, (
        f"modules over {MAX_LINES} lines: {over}; split each into modules of one concern"
    )


def test_the_trainer_reads_in_one_sitting() -> None:
    source = (Path(__file__).resolve().parents[2] / "src/visionkit/training/trainer.py").read_text()
    trainer = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "Trainer"
    )
    init = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert trainer.end_lineno is not None
    assert init.end_lineno is not None
    assert trainer.end_lineno - trainer.lineno + 1 < 450
    assert init.end_lineno - init.lineno + 1 < 60
