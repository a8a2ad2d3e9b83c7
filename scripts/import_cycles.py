"""Prints the import circles of a package (default ``rae_edge``), type-only imports included.

Two views, both read from grimp (the graph ``lint-imports`` checks):
- modules: each group of modules that import each other, directly or not;
- siblings: per package level, the children (subpackages squashed) in a circle, as the
  ``acyclic_siblings`` contract sees them, with the imports that make each edge.

Exit status 1 when there is any circle. Usage: ``python scripts/import_cycles.py [package]``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import grimp


def components(nodes: Iterable[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succ = edges.get(v, [])
            if i < len(succ):
                work.append((v, i + 1))
                w = succ[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def main(argv: list[str]) -> int:
    package = argv[0] if argv else "rae_edge"
    g = grimp.build_graph(package, exclude_type_checking_imports=False)
    found = 0
    mods = sorted(g.modules)
    edges = {m: sorted(g.find_modules_directly_imported_by(m)) for m in mods}
    for comp in components(mods, edges):
        found += 1
        print(f"{len(comp)} modules in a circle:")
        for m in comp:
            print(f"  {m} -> {', '.join(x for x in edges[m] if x in comp)}")

    def siblings(parent: str) -> None:
        nonlocal found
        kids = sorted(g.find_children(parent))
        sib = {a: [b for b in kids if a != b and g.direct_import_exists(
            importer=a, imported=b, as_packages=True)] for a in kids}
        for comp in components(kids, sib):
            found += 1
            print(f"under {parent}: {len(comp)} siblings in a circle:")
            for a in comp:
                for b in sib[a]:
                    if b in comp:
                        imps = sorted(f"{x} -> {y}" for x in [a, *g.find_descendants(a)]
                                      for y in [b, *g.find_descendants(b)]
                                      if g.direct_import_exists(importer=x, imported=y))
                        print(f"  {a} -> {b}: {'; '.join(imps[:4])}"
                              f"{' ...' if len(imps) > 4 else ''}")
        for k in kids:
            if g.find_children(k):
                siblings(k)

    siblings(package)
    if not found:
        print(f"no import circle in {package}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
