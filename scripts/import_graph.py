"""The import graph of the wclust package, function-local imports counted, and its rules.

Run ``python scripts/import_graph.py`` to print every module's imports of the package's own
modules, the cycles and the floor violations; it exits 1 if there are any. ``tests/test_architecture.py``
calls ``check()``.

An edge A -> B is any ``import``/``from ... import`` in A, at any depth (inside functions, classes,
``try`` and ``if`` blocks), that names B or a name in B; ``from pkg import sub`` counts the submodule
``sub``. A module named in a string (``importlib.import_module("wclust.x")``, a table of
``"wclust.x:fn"`` entries, or an f-string whose constant head is ``"wclust.x."``) counts too.
Importing a package's ``__init__`` implicitly through one of its submodules does not.
"""
from __future__ import annotations

import ast
import os
import re
import sys

PACKAGE = "wclust"
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# Floors, lowest first: a module may import its own floor and lower ones, never a higher one.
# On a floor whose name has " | " (accuracy | performance) the groups do not import each other.
# The package root (the public API) and the CLI sit on top.
FLOORS = [
    ("base", ["wclust.errors", "wclust.paths", "wclust.atomic", "wclust.sysmem", "wclust._native",
              "wclust.figures"]),
    ("kernels", ["wclust.kernels"]),
    ("clustering", ["wclust.clustering"]),
    ("sources", ["wclust.sources"]),
    ("accuracy | performance", ["wclust.accuracy", "wclust.performance"]),
    ("study / report", ["wclust.study", "wclust.report"]),
    ("commands", ["wclust.commands"]),
    ("cli", ["wclust.cli", "wclust.__main__", "wclust"]),
]

_STRING_MODULE = re.compile(r"^(wclust(?:\.\w+)*)(?::\w+)?$")


def modules(src: str = SRC) -> dict[str, str]:
    """{module name: file path} for every .py file of the package."""
    out = {}
    root = os.path.join(src, PACKAGE)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), src)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(d, f)
    return out


def _resolve(name: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return name
    parts = current.split(".") if is_package else current.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _known(name: str, mods) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in mods:
            return cand
    return None


def imports_of(module: str, path: str, mods) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, module, is_package)
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                targets.append(sub if sub in mods else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _STRING_MODULE.match(node.value)
            if m and "." in m.group(1):
                targets = [m.group(1)]
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value)
            if head.startswith(PACKAGE + ".") and head.endswith("."):
                targets = [m for m in mods if m.startswith(head)]
        for t in targets:
            k = _known(t, mods) if t.startswith(PACKAGE) else None
            # a module's own ancestors (its packages' __init__) load implicitly: not an edge
            if k and k != module and not module.startswith(k + "."):
                out.add(k)
            elif k and k == PACKAGE and module != PACKAGE and t == PACKAGE:
                out.add(k)   # an explicit import of the package root itself
    return out


def graph(src: str = SRC) -> dict[str, set[str]]:
    mods = modules(src)
    return {m: imports_of(m, p, mods) for m, p in sorted(mods.items())}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), by Tarjan."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in g.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def floor_of(module: str) -> tuple[int, str]:
    """(floor number, group) of a module: the most specific prefix listed in FLOORS."""
    best = None
    for i, (_, groups) in enumerate(FLOORS):
        for grp in groups:
            inside = module == grp or (grp != PACKAGE and module.startswith(grp + "."))
            if inside and (best is None or len(grp) > len(best[1])):
                best = (i, grp)
    if best is None:
        raise KeyError(f"{module} is on no floor: add it to FLOORS in {__file__}")
    return best


def floor_violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in sorted(g.items()):
        fa, ga = floor_of(a)
        for b in sorted(targets):
            fb, gb = floor_of(b)
            if fb > fa:
                out.append(f"{a} ({FLOORS[fa][0]}) imports {b} ({FLOORS[fb][0]}), a higher floor")
            elif fb == fa and ga != gb and " | " in FLOORS[fa][0]:
                out.append(f"{a} imports {b}: two groups of the floor {FLOORS[fa][0]!r}")
    return out


def check(src: str = SRC, out=sys.stdout) -> dict:
    """Print the graph; return {"modules", "edges", "cycles", "violations"}."""
    g = graph(src)
    for m, targets in g.items():
        print(f"{m} [{FLOORS[floor_of(m)[0]][0]}] -> {', '.join(sorted(targets)) or '-'}", file=out)
    cyc, bad = cycles(g), floor_violations(g)
    n_edges = sum(len(t) for t in g.values())
    print(f"{len(g)} modules, {n_edges} edges, {len(cyc)} cycles, {len(bad)} floor violations", file=out)
    for c in cyc:
        print("cycle: " + " <-> ".join(c), file=out)
    for v in bad:
        print("floor: " + v, file=out)
    return {"modules": len(g), "edges": n_edges, "cycles": cyc, "violations": bad}


if __name__ == "__main__":
    r = check()
    sys.exit(1 if r["cycles"] or r["violations"] else 0)
