"""The suite's import graph, read from the source: who imports what, the circles, the seams.

Run it to redraw the picture in docs/architecture.md (``docs/architecture.dot``, and ``.svg`` when
Graphviz is installed); tests/test_architecture.py fails when the committed picture no longer matches the
code, when two modules import each other (directly or round a circle), when a package imports another
package's private name, or when an import points against the layering (models <- engines, drawing <- CLI).

    python docs/architecture.py            # rewrite docs/architecture.dot and .svg

Written with `ast` rather than by importing the packages: the graph is the source's, including imports
made inside functions (a deferred import is still a dependency) but not those under ``if TYPE_CHECKING:``,
which never run.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ppl_models", "inference", "plates", "ppl")
# which packages each may import: the models know nothing of engines or drawing; the CLI sits on top
LAYERS = {"ppl_models": set(), "inference": {"ppl_models"}, "plates": {"ppl_models"},
          "ppl": {"ppl_models", "inference", "plates"}}
# what each package owns, for the picture
OWNS = {
    "ppl_models": "the models: Pyro programs, their data fields, options and default data",
    "inference": "fit(): NUTS, HMC, SVI, MAP, MLE; Posterior; diagnostics",
    "plates": "graph(): plate diagrams, factorization, d-separation",
    "ppl": "the ppl command, run directories, the demo report",
}


class Import(NamedTuple):
    """One imported name: `source` module imports `name` from module `target` (`name` is ``*`` for a whole
    module); `deferred` when the import sits inside a function."""

    source: str
    target: str
    name: str
    deferred: bool


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(tree: ast.AST):
    """(import node, deferred) for every import that runs: under functions too, not under TYPE_CHECKING."""
    def walk(node, deferred):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    yield from walk(sub, deferred)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)
    yield from walk(tree, False)


def imports(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """Every import of one of `packages`' modules made by one of their modules."""
    mods = modules(root, packages)
    out = []
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        for node, deferred in _imports_of(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in packages:
                        out.append(Import(name, alias.name, "*", deferred))
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in packages:
                continue
            for alias in node.names:
                whole = f"{target}.{alias.name}"
                if whole in mods:  # `from . import queries`: the module itself
                    out.append(Import(name, whole, "*", deferred))
                else:
                    out.append(Import(name, target, alias.name, deferred))
    return out


def package_of(module: str) -> str:
    return module.split(".")[0]


def circles(found: list[Import]) -> list[list[str]]:
    """Every circle of modules importing each other (a package's ``__init__`` counts as a module)."""
    import networkx as nx

    G = nx.DiGraph()
    G.add_edges_from((i.source, i.target) for i in found if i.source != i.target)
    return sorted(sorted(c) for c in nx.simple_cycles(G))


def private_imports(found: list[Import]) -> list[Import]:
    """Imports of another package's private name (``_name``, or a name inside a ``_module``)."""
    out = []
    for i in found:
        if package_of(i.source) == package_of(i.target):
            continue
        if i.name.startswith("_") or any(part.startswith("_") for part in i.target.split(".")):
            out.append(i)
    return out


def against_layers(found: list[Import], layers: dict[str, set[str]] = LAYERS) -> list[Import]:
    """Imports pointing against the layering (e.g. a model importing an engine)."""
    return [i for i in found if package_of(i.source) != package_of(i.target)
            and package_of(i.target) not in layers.get(package_of(i.source), set())]


def unit(module: str, root: Path = ROOT) -> str:
    """The box a module is drawn in: its package, or its subpackage (``inference.fast``)."""
    parts = module.split(".")
    if len(parts) > 1 and (root / parts[0] / parts[1] / "__init__.py").is_file():
        return ".".join(parts[:2])
    return parts[0]


def seams(found: list[Import]) -> dict[tuple[str, str], list[str]]:
    """(importing box, imported box) -> the names imported across it, written ``module.name``."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for i in found:
        a, b = unit(i.source), unit(i.target)
        if a == b:
            continue
        short = i.target[len(b) + 1:] if i.target != b else ""
        if i.name == "*":
            out[(a, b)].add(short or b)
        else:
            out[(a, b)].add(f"{short}.{i.name}" if short else i.name)
    return {k: sorted(v) for k, v in sorted(out.items())}


def to_dot(found: list[Import] | None = None, root: Path = ROOT) -> str:
    """The picture: one box per package (subpackages inside it), the command line on top and the models at
    the bottom, an arrow per seam labelled with the names imported across it (inside `ppl_models`, where
    every model module imports the same few helpers, the arrows go unlabelled)."""
    found = imports(root) if found is None else found
    mods = modules(root)
    units = sorted({unit(m) for m in mods})
    count = defaultdict(int)
    for m in mods:
        count[unit(m)] += 1
    lines = ["digraph architecture {", '  rankdir=TB; node [shape=box, style=rounded, fontname="Helvetica", '
             'fontsize=11]; edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    for package in PACKAGES:
        lines.append(f'  subgraph "cluster_{package}" {{ label="{package}: {OWNS[package]}"; '
                     'fontname="Helvetica-Bold"; fontsize=11; color="#999999";')
        for u in units:
            if package_of(u) == package:
                lines.append(f'    "{u}" [label="{u}\\n({count[u]} modules)"];')
        lines.append("  }")
    for (a, b), names in seams(found).items():
        if package_of(a) == package_of(b) == "ppl_models":
            lines.append(f'  "{a}" -> "{b}";')
            continue
        label = "\\n".join(names)
        lines.append(f'  "{a}" -> "{b}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    dot = to_dot()
    out = ROOT / "docs" / "architecture.dot"
    out.write_text(dot, encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")
    if shutil.which("dot"):
        svg = out.with_suffix(".svg")
        subprocess.run(["dot", "-Tsvg", str(out), "-o", str(svg)], check=True)
        print(f"wrote {svg.relative_to(ROOT)}")
    else:
        print("Graphviz 'dot' not found: the SVG was not redrawn", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
