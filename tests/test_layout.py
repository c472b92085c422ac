"""The floor plan holds (issue 15; docs/design.md, "Floors"): no module of explearn imports, directly or through
others, a module that imports it back, and none imports a module of a floor above its own. Imports inside functions
count; those under ``if TYPE_CHECKING`` (annotations only) do not."""

import ast
from pathlib import Path

import explearn

ROOT = Path(explearn.__file__).parent

#: the floors, lowest first, as docs/design.md lists them: a module may import its own floor and those below
FLOORS = [
    ["explearn.errors", "explearn.version", "explearn.config", "explearn.registry", "explearn.files",
     "explearn.threads"],
    ["explearn.datasets", "explearn.models", "explearn.losses", "explearn.explain", "explearn.metrics"],
    ["explearn.methods"],
    ["explearn.selection", "explearn.search", "explearn.run_config", "explearn.train", "explearn.vectorized",
     "explearn.checkpoint", "explearn.outputs"],
    ["explearn.store", "explearn.execution", "explearn.sweep", "explearn.pool", "explearn.claims",
     "explearn.cluster", "explearn.specs", "explearn.planning", "explearn.inference"],
    ["explearn.results", "explearn.verdicts", "explearn.report", "explearn.reproduce", "explearn.bench"],
    ["explearn.cli", "explearn.__main__", "explearn"],
]


def floor(module: str) -> int | None:
    """The floor of a module: that of the longest name in FLOORS it is or lies under."""
    found = [(len(name), i) for i, names in enumerate(FLOORS) for name in names
             if module == name or module.startswith(name + ".")]
    return max(found)[1] if found else None


def module_name(path: Path) -> str:
    return ".".join(("explearn", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")


def imports(path: Path, known: set[str]) -> set[str]:
    """The explearn modules ``path`` imports anywhere but under ``if TYPE_CHECKING``."""
    out = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("explearn"):
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    out.add(full if full in known else child.module)
            elif isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.startswith("explearn"))
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known}


def test_no_import_cycles():
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {name: imports(path, set(paths)) - {name} for name, path in paths.items()}
    cycles = []

    def walk(node: str, stack: list[str], seen: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in seen:
                seen.add(nxt)
                walk(nxt, stack + [nxt], seen)

    for name in sorted(graph):
        walk(name, [name], {name})
    assert len(graph) > 50 and not cycles, cycles[:5]


def test_a_cycle_is_seen(tmp_path):
    """The check can fail: two modules importing each other inside functions form a cycle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from explearn.b import g\n")
    b.write_text("from explearn.a import f\n")
    known = {"explearn.a", "explearn.b"}
    assert imports(a, known) == {"explearn.b"} and imports(b, known) == {"explearn.a"}


def test_no_module_imports_a_floor_above_its_own():
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    unplaced = sorted(m for m in paths if floor(m) is None)
    assert not unplaced, f"give these modules a floor (here and in docs/design.md): {unplaced}"
    upward = [f"{m} (floor {floor(m)}) imports {d} (floor {floor(d)})"
              for m, p in sorted(paths.items()) for d in sorted(imports(p, set(paths))) if floor(d) > floor(m)]
    assert not upward, upward[:5]
    assert floor("explearn.methods.stacking") == 2 and floor("explearn.report.render") == 5
