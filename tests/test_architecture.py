"""The shape of the package: no import cycles (module-level and function-level imports alike), the
library never sees argparse, commands sit on top, and function-local imports are rare and said.

The import graph is computed from the source with ``ast``, independently of Python's import
machinery: an edge A -> B for every ``import B`` / ``from B import x`` anywhere in A (inside
functions too), where B (or ``B.x`` when that is a module) is a module of the package. Imports
under ``if __name__ == "__main__":`` are left out: that block runs only when the file is the
script, as a module named ``__main__``, so it cannot take part in a cycle. A package's
``__init__`` is not an implicit target of its submodules' imports (as in import-linter and pydeps).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "rsis_lite"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` exactly."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    t = node.test
    return (isinstance(t.left, ast.Name) and t.left.id == "__name__" and len(t.ops) == 1
            and isinstance(t.ops[0], ast.Eq) and isinstance(t.comparators[0], ast.Constant)
            and t.comparators[0].value == "__main__")


def _walk(tree: ast.AST):
    """Every node, except the bodies of ``if __name__ == "__main__":`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not _is_main_guard(c))


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    func_lines = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.append((t, node.lineno, node.lineno in func_lines))
    return out


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    local: list[tuple[str, str, int]] = []
    for name, path in mods.items():
        for target, line, in_function in imports_of(name, path, set(mods)):
            edges[name].add(target)
            if in_function:
                local.append((name, target, line))
    return edges, local


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from rsis_lite import metrics\n    from .errors import RsisError\n")
    got = imports_of("rsis_lite.m", src, {"rsis_lite.metrics", "rsis_lite.errors", "rsis_lite"})
    assert ("rsis_lite.metrics", 4, True) in got and ("rsis_lite.errors", 5, True) in got


def test_the_package_has_no_import_cycle():
    edges, _ = graph()
    assert len(edges) > 40, "the package's modules were not found"
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_library_never_sees_argparse_or_the_command_layer():
    edges, _ = graph()
    for name, path in modules().items():
        if name.startswith(("rsis_lite.commands", "rsis_lite.cli")) or name == "rsis_lite.__main__":
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in _walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in _walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "argparse" not in names, f"{name} imports argparse: commands belong in rsis_lite/commands/"
        params = {a.arg for f in _walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for a in f.args.args + f.args.kwonlyargs}
        assert "args" not in params, f"{name} has a function taking `args`: pass options as a dataclass"
        bad = {t for t in edges[name] if t.startswith(("rsis_lite.commands", "rsis_lite.cli"))}
        assert not bad, f"{name} imports the command layer {sorted(bad)}"


def test_function_local_imports_are_few_and_each_says_why():
    """No package module is imported inside a function (there is no cycle to dodge); a third-party
    import inside a function (an optional or slow dependency) carries a comment saying why."""
    _, local = graph()
    assert local == [], f"package imports inside functions (move them to the top): {local}"
    unexplained = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for f in ast.walk(tree):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(f):
                if isinstance(n, (ast.Import, ast.ImportFrom)) and "#" not in lines[n.lineno - 1] \
                        and not lines[n.lineno - 2].strip().startswith("#"):
                    unexplained.append(f"{name}:{n.lineno}")
    assert not unexplained, f"function-local imports without a comment saying why: {unexplained}"


def reachable(edges: dict[str, set[str]], name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for n in edges[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


@pytest.mark.parametrize("lower,upper", [
    ("rsis_lite.systems", "rsis_lite.train"), ("rsis_lite.systems", "rsis_lite.inference"),
    ("rsis_lite.inference", "rsis_lite.train"), ("rsis_lite.metrics", "rsis_lite.systems"),
    ("rsis_lite.data", "rsis_lite.systems"), ("rsis_lite.train", "rsis_lite.reproduce"),
])
def test_layers_import_downwards_only(lower, upper):
    """The systems know nothing of training or inference, inference nothing of training, metrics and
    data nothing of the systems, training nothing of ``reproduce``."""
    edges, _ = graph()
    below = set().union(*(reachable(edges, m) | {m} for m in edges if m == lower or m.startswith(lower + ".")))
    assert not {m for m in below if m == upper or m.startswith(upper + ".")}, f"{lower} reaches {upper}"
