"""ARCHITECTURE.md stays true: its module map names every module that exists (and no other), the
layers import only downwards, and no modules import each other in a circle.

Imports are read from the source (ast), lazy ones inside functions included: a lazy import still
ties the two modules together.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "tutor", "serving", "eval")
# Which packages each package may import (ingest is the ground floor; nothing imports eval).
ALLOWED = {
    "ingest": {"ingest"},
    "tutor": {"ingest", "tutor"},
    "serving": {"ingest", "tutor", "serving"},
    "eval": {"ingest", "tutor", "eval"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts or "versions" in path.parts:
                continue  # versions/: Alembic migrations, loaded by path, not imported
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports (`from a.b import c` counts a.b.c when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, name, set(found)) for name, path in found.items()}


def mapped_modules() -> set[str]:
    """Modules the map in ARCHITECTURE.md names: `pkg/mod.py` or `pkg/sub/` lines of its code block."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text.split("## Module map", 1)[1].split("```", 2)[1]
    named = set()
    folder: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^( *)([\w.]+/|[\w.]+\.py)(?:\s|$)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        entry = match.group(2)
        folder = folder[:depth]
        if entry.endswith("/"):
            folder.append(entry[:-1])
            named.add(".".join(folder))
        else:
            stem = entry[:-3]
            named.add(".".join(folder) if stem == "__init__" else ".".join([*folder, stem]))
    return named


def test_the_module_map_names_every_module_and_only_real_ones():
    real = set(modules())
    mapped = mapped_modules()
    assert not real - mapped, f"modules missing from ARCHITECTURE.md's map: {sorted(real - mapped)}"
    assert not mapped - real, f"ARCHITECTURE.md's map names modules that do not exist: {sorted(mapped - real)}"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [f"{name} imports {target}" for name, targets in graph().items() for target in targets
             if target.split(".")[0] not in ALLOWED[name.split(".")[0]]]
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    # A package's __init__ re-exporting its own modules is not a cycle of meaning: leave those edges out.
    edges = {n: {t for t in ts if not (t.startswith(n + ".") and modules()[n].name == "__init__.py")}
             for n, ts in edges.items()}
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
