"""The package's import graph, counted: modules, layers, import edges, cycles, and imports
that run back up against the roles (a script, not a benchmark; nothing is imported).

Every ``cnnconv`` module of a checkout is parsed with ``ast``; an edge is one module
importing another of the package (``import cnnconv.x``, ``from cnnconv.x import y``,
``from cnnconv import x``), counted once per pair. Edges are split by when they run:
at import (module level), deferred (inside a function: they run when it is called), and
for type checkers only (under ``if TYPE_CHECKING``), which never run.

- *layers*: the longest chain of import-time edges, bottom (imports nothing of the
  package) = 1, after merging each cycle into one node.
- *cycles*: groups of modules that import each other, through edges of any kind.
- *back up*: an edge against the roles -- the engine and the statistics import nothing
  above them, the harness nothing of the tools or the faces (``plugin``, ``cli``) -- or an
  edge inside a cycle. In a flat package only the cycles can run back up.

    python benchmarks/module_graph.py [CHECKOUT]     # default: this checkout
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "cnnconv"
# role -> rank: an import may go to the same or a lower rank only
RANKS = {"engine": 0, "stats": 0, "harness": 1, "tools": 2, "face": 3}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    when: str  # "import", "deferred" or "typing"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(tree: ast.Module, modules: set[str], here: str) -> list[tuple[str, str]]:
    """(target module, when) of every import of the package in ``tree``."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, when: str) -> None:
        if isinstance(node, ast.If) and _under_type_checking(node):
            for child in node.body:
                visit(child, "typing")
            for child in node.orelse:
                visit(child, when)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            when = "deferred" if when == "import" else when
        if isinstance(node, ast.Import):
            found.extend((alias.name, when) for alias in node.names
                         if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = here.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == PACKAGE:
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.append((candidate if candidate in modules else base, when))
        for child in ast.iter_child_nodes(node):
            visit(child, when)

    visit(tree, "import")
    return found


def edges_of(checkout: Path) -> tuple[list[str], list[Edge]]:
    paths = sorted((checkout / PACKAGE).rglob("*.py"))
    names = {module_name(checkout, path): path for path in paths}
    edges: dict[tuple[str, str], str] = {}
    order = {"import": 0, "deferred": 1, "typing": 2}
    for name, path in names.items():
        for target, when in imported(ast.parse(path.read_text()), set(names), name):
            while target not in names and "." in target:  # cnnconv.x.y where y is a name
                target = target.rsplit(".", 1)[0]
            if target == name or target not in names:
                continue
            key = (name, target)
            if key not in edges or order[when] < order[edges[key]]:
                edges[key] = when
    return sorted(names), [Edge(s, t, w) for (s, t), w in sorted(edges.items())]


def cycles(modules: list[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph = defaultdict(list)
    for edge in edges:
        graph[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in modules:
        if module not in index:
            connect(module)
    return groups


def layers(modules: list[str], edges: list[Edge], groups: list[list[str]]) -> dict[str, int]:
    """Layer of each module over import-time edges, a cycle counted as one node."""
    node = {m: m for m in modules}
    for group in groups:
        for member in group:
            node[member] = group[0]
    below = defaultdict(set)
    for edge in edges:
        if edge.when == "import" and node[edge.source] != node[edge.target]:
            below[node[edge.source]].add(node[edge.target])
    depth: dict[str, int] = {}

    def layer(n: str) -> int:
        if n not in depth:
            depth[n] = 0  # guards a cycle left by deferred edges
            depth[n] = 1 + max((layer(m) for m in below[n]), default=0)
        return depth[n]

    return {m: layer(node[m]) for m in modules}


def role(module: str) -> str | None:
    """The role of a module in a layout with subpackages; None in a flat package."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in RANKS:  # a subpackage, or a module in one
        return parts[1]
    if parts[-1] in ("plugin", "cli"):
        return "face"
    return None  # the package's own __init__ (its version, imported by all), or flat


def runs_back_up(edge: Edge, in_cycle: set[tuple[str, str]]) -> bool:
    if (edge.source, edge.target) in in_cycle:
        return True
    source, target = role(edge.source), role(edge.target)
    return source is not None and target is not None and RANKS[target] > RANKS[source]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", nargs="?", type=Path,
                        default=Path(__file__).resolve().parent.parent)
    checkout = parser.parse_args().checkout
    modules, edges = edges_of(checkout)
    groups = cycles(modules, edges)
    member = {m: i for i, group in enumerate(groups) for m in group}
    in_cycle = {(e.source, e.target) for e in edges
                if e.source in member and member[e.source] == member.get(e.target)}
    depth = layers(modules, edges, groups)
    back = [e for e in edges if runs_back_up(e, in_cycle)]
    kinds = {when: sum(e.when == when for e in edges) for when in ("import", "deferred", "typing")}
    print(f"checkout {checkout}")
    packages = sum((checkout / Path(*m.split("."))).is_dir() for m in modules)
    print(f"modules {len(modules)} (of them {packages} package __init__ file(s))")
    print(f"layers  {max(depth.values())}")
    print(f"edges   {len(edges)}: {kinds['import']} at import, {kinds['deferred']} deferred, "
          f"{kinds['typing']} for type checkers only")
    print(f"cycles  {len(groups)}" + "".join(f"\n        {' <-> '.join(g)}" for g in groups))
    print(f"back up {len(back)}" + "".join(f"\n        {e.source} -> {e.target} ({e.when})" for e in back))
    for level in range(max(depth.values()), 0, -1):
        names = [m.removeprefix(PACKAGE + ".") for m in modules if depth[m] == level]
        print(f"  layer {level}: {', '.join(names)}")


if __name__ == "__main__":
    main()
