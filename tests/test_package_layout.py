"""The package's import graph: no circle (counting imports inside functions, which hide one), and
shared modules never import a paper's subpackage (the package docstring's rule)."""
from __future__ import annotations

import ast
from pathlib import Path

import replication

ROOT = Path(replication.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every replication module `path` imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("replication"):
                for alias in node.names:  # `from .. import zoo` imports the module replication.zoo
                    sub = f"{target}.{alias.name}"
                    out.add(sub if (ROOT.parent / (sub.replace(".", "/") + ".py")).exists() else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("replication")}
    return out - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in ROOT.rglob("*.py")}


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}
    circles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(g.get(m, ())):
            if n not in g:
                continue
            if state.get(n) == 1:
                circles.append(" -> ".join(stack[stack.index(n):] + [n]) if n in stack else f"{m} -> {n}")
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(circles)


# modules over both papers' results (the package docstring names them): they may import either paper
AGGREGATORS = {"replication.report", "replication.verify"}


def test_shared_modules_do_not_import_a_paper():
    shared = {m: deps for m, deps in graph().items()
              if m.count(".") == 1 and not m.startswith("replication.paper_") and m not in AGGREGATORS}
    bad = {m: sorted(d for d in deps if d.startswith(("replication.paper_a", "replication.paper_b"))) for m, deps in shared.items()}
    assert not {m: d for m, d in bad.items() if d}, bad
