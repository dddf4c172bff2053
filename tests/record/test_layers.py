"""audit/ is layered: a package imports only packages below it (or itself), never above or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import audit

ROOT = Path(audit.__file__).resolve().parent
# bottom to top; packages on one level may not import each other
LAYERS: dict[str, int] = {
    "errors": -1,
    "__init__": 0, "paths": 0, "datafiles": 0, "safeio": 0,
    "record": 1,
    "checkpoint": 2,
    "fingerprinting": 3, "assets": 3,
    "lineage": 4, "probing": 4, "demo": 4, "claims": 4,
    "pipeline": 5,
    "reporting": 6,
    "batch": 7,
    "cli": 8,
    "__main__": 9,
}


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported audit unit) for every import in the file, lazy and TYPE_CHECKING ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "audit" else [f"audit.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "audit" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in ROOT.rglob("*.py") if "_bundled" not in p.parts}
    assert units <= set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


def test_no_upward_or_sideways_imports() -> None:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(path)
        for line, dst in _imports(path):
            if dst == src or dst == "__version__":
                continue
            if dst not in LAYERS:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports unknown audit.{dst}")
            elif LAYERS[dst] >= LAYERS[src]:
                problems.append(f"{path.relative_to(ROOT)}:{line} ({src}, layer {LAYERS[src]}) imports "
                                f"audit.{dst} (layer {LAYERS[dst]})")
    assert not problems, "\n".join(problems)


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["audit", *rel.parts]
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _module_imports(path: Path, known: set[str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        out |= {n for n in names if n in known}
    return out


def test_no_import_cycles_between_modules() -> None:
    """Lazy imports included: a cycle means two modules each need the other, whatever the import time."""
    files = {_module(p): p for p in ROOT.rglob("*.py") if "_bundled" not in p.parts}
    graph = {m: _module_imports(p, set(files)) - {m} for m, p in files.items()}
    # a package's __init__ importing its own submodules is not a cycle with them
    graph = {m: {d for d in deps if not (d.startswith(m + ".") and files[m].name == "__init__.py")}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
