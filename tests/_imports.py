"""The import graph of the ``convbench`` tree, read from the source (nothing is imported).

:func:`package_dirs` reads ``pyproject.toml``'s package list and ``package-dir`` mapping;
:func:`module_files` maps every module name to its file; :func:`import_graph` collects every
first-party import of every module, at module level and inside functions alike, as an edge
``(importer, imported, line)``.  ``from P import name`` is an edge to ``P.name`` when that is a
module, else to ``P``; the implicit import of a module's parent packages is not an edge (it
would make every package ``__init__`` that imports its submodules a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, as the tomli package pytest brings there
    import tomli as tomllib

from convbench.suites.static.cache import from_module

ROOT = Path(__file__).resolve().parents[1]


def pyproject(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Declared package name -> its folder (``package-dir`` mapping applied)."""
    setup = pyproject(root)["tool"]["setuptools"]
    mapping = setup.get("package-dir", {})
    out = {}
    for pkg in setup["packages"]:
        parts = pkg.split(".")
        for i in range(len(parts), 0, -1):  # the longest mapped prefix decides
            prefix = ".".join(parts[:i])
            if prefix in mapping:
                out[pkg] = root / mapping[prefix] / Path(*parts[i:])
                break
        else:
            out[pkg] = root / Path(*parts)
    return out


def tree_packages(root: Path = ROOT) -> dict[str, Path]:
    """Every package the mapped folders actually hold (folders with an ``__init__.py``), and the
    folders holding Python files without one (returned under a ``"?"`` prefix)."""
    mapping = pyproject(root)["tool"]["setuptools"].get("package-dir", {})
    found = {}
    for name, folder in mapping.items():
        base = root / folder
        for d in [base, *sorted(p for p in base.rglob("*") if p.is_dir())]:
            if "__pycache__" in d.parts:
                continue
            rel = d.relative_to(base).parts
            dotted = ".".join((name, *rel))
            if (d / "__init__.py").exists():
                found[dotted] = d
            elif any(d.glob("*.py")):
                found["?" + dotted] = d
    return found


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file for every module of every declared package (``__init__`` as the
    package's own name)."""
    out = {}
    for pkg, folder in package_dirs(root).items():
        for f in sorted(folder.glob("*.py")):
            out[pkg if f.name == "__init__.py" else f"{pkg}.{f.stem}"] = f
    return out


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    #: inside a function (or class body), not at module level
    deferred: bool


def _imports(tree: ast.Module):
    """(node, deferred) for every import statement of a module."""
    stack = [(node, False) for node in tree.body]
    while stack:
        node, deferred = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, deferred
            continue
        inner = deferred or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
        stack += [(child, inner) for child in ast.iter_child_nodes(node)]


def import_graph(files: dict[str, Path], top: str = "convbench") -> list[Edge]:
    """Every first-party import edge between the modules of ``files``."""
    modules = set(files)
    edges = []
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node, deferred in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                mod = from_module(node, package)
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            for target in dict.fromkeys(targets):
                if target.split(".")[0] != top:
                    continue
                while target not in modules and "." in target:  # `import convbench.x.y` of a name
                    target = target.rpartition(".")[0]
                if target != name:
                    edges.append(Edge(name, target, node.lineno, deferred))
    return edges


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
            visit(v)
    return out


#: layers bottom to top (design notes, section 2); a module belongs to the longest prefix listed
LAYERS = {
    "convbench.runtime": 0,
    "convbench.reference": 0,
    "convbench.kernels": 1,
    "convbench.nn": 2, "convbench.models": 2, "convbench.attacks": 2,
    "convbench.suites": 3,
    "convbench.suites.plan": 3.0, "convbench.suites.static": 3.0,
    "convbench.suites.measure": 3.1,
    "convbench.suites.regress": 3.2,
    "convbench.reports": 4,
    "convbench.cli": 5,
    "convbench": 6,  # the import root and __main__: they re-export and start the CLI
}


def layer(module: str) -> float:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"module {module} is in no layer of LAYERS")


#: importer prefix -> the only first-party prefixes it may import (beyond the rank rule)
ONLY = {
    "convbench.reference": ("convbench.reference",),
    "convbench.runtime": (),
    "convbench.reports": ("convbench.reports", "convbench.suites", "convbench.runtime"),
}


def upward(edges: list[Edge]) -> list[Edge]:
    """Imports that run from a lower layer to a higher one, or outside what a layer may see."""
    bad = []
    for e in edges:
        if layer(e.imported) > layer(e.importer):
            bad.append(e)
            continue
        for prefix, allowed in ONLY.items():
            inside = e.importer == prefix or e.importer.startswith(prefix + ".")
            if inside and not any(e.imported == a or e.imported.startswith(a + ".") for a in allowed):
                bad.append(e)
    return bad
