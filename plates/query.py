"""Independence queries on the plate graph or its unrolled copy, answered by networkx's d-separation.

A plain name (``"theta"``) is a node of the plate graph, standing for all its copies; an indexed name
(``"x[2]"``, ``"x[2,1]"``, indices from 1 like the plate labels) is one copy in the unrolled graph, where
``theta_k -> x_j`` (K and N plates) links every theta copy to every x copy and shared plates link copy
to copy. Constants (hyperparameters, parameters, covariates) are fixed, so they are always conditioned on.
"""

from __future__ import annotations

import itertools
import re

import networkx as nx

from .errors import PlateError

MAX_UNROLLED = 200_000
_INDEXED = re.compile(r"^\s*([^\[\]\s]+)\s*\[\s*([0-9,\s]+)\]\s*$")


def _copies(G: nx.DiGraph, n: str) -> list[tuple[int, ...]]:
    sizes = [G.graph["plates"][p]["size"] for p in G.nodes[n].get("plates", ())]
    return list(itertools.product(*(range(1, s + 1) for s in sizes)))


def copy_name(n: str, index: tuple[int, ...]) -> str:
    return f"{n}[{','.join(map(str, index))}]" if index else n


def unroll(G: nx.DiGraph) -> nx.DiGraph:
    """Every node copied once per index of its plates; edges agree on the plates parent and child share."""
    total = sum(len(_copies(G, n)) for n in G)
    if total > MAX_UNROLLED:
        raise PlateError("unroll", f"the unrolled graph would have {total} nodes (limit {MAX_UNROLLED}); "
                         "query the plate graph with plain names instead")
    U = nx.DiGraph()
    for n in G:
        plates = G.nodes[n].get("plates", ())
        for idx in _copies(G, n):
            U.add_node(copy_name(n, idx), base=n, index=dict(zip(plates, idx)), kind=G.nodes[n]["kind"],
                       role=G.nodes[n].get("role"))
    for u, v in G.edges:
        pu, pv = G.nodes[u].get("plates", ()), G.nodes[v].get("plates", ())
        for iv in _copies(G, v):
            at = dict(zip(pv, iv))
            free = [p for p in pu if p not in at]
            for extra in itertools.product(*(range(1, G.graph["plates"][p]["size"] + 1) for p in free)):
                where = {**at, **dict(zip(free, extra))}
                U.add_edge(copy_name(u, tuple(where[p] for p in pu)), copy_name(v, iv))
    return U


def _names(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value is None:
        return []
    return list(value)


def _is_constant(data: dict) -> bool:
    return data["kind"] in ("hyperparameter", "parameter") or data.get("role") == "covariate"


def _canonical(G: nx.DiGraph, name: str, unrolled: bool) -> str:
    """Check a node reference and write it the way the (unrolled) graph names it."""
    m = _INDEXED.match(name)
    base = m.group(1) if m else name.strip()
    if base not in G:
        raise PlateError(name, f"is not a node of the graph; nodes: {', '.join(G)}")
    if not unrolled:
        return base
    plates = G.nodes[base].get("plates", ())
    if not m:
        if plates:
            raise PlateError(name, f"lives on plates {', '.join(plates)}: give an index, e.g. {base}[1]")
        return base
    index = tuple(int(i) for i in m.group(2).split(",") if i.strip())
    if len(index) != len(plates):
        raise PlateError(name, f"needs {len(plates)} indices (plates {', '.join(plates) or 'none'})")
    for p, i in zip(plates, index):
        size = G.graph["plates"][p]["size"]
        if not 1 <= i <= size:
            raise PlateError(name, f"index {i} is outside 1..{size} of plate {p}")
    return copy_name(base, index)


def _prepare(G: nx.DiGraph, *groups) -> tuple[nx.DiGraph, list[set[str]]]:
    names = [_names(g) for g in groups]
    unrolled = any(_INDEXED.match(n) for group in names for n in group)
    H = unroll(G) if unrolled else G
    return H, [{_canonical(G, n, unrolled) for n in group} for group in names]


def _d_separated(H: nx.DiGraph, xs: set, ys: set, zs: set) -> bool:
    if hasattr(nx, "is_d_separator"):
        return nx.is_d_separator(H, xs, ys, zs)
    return nx.d_separated(H, xs, ys, zs)  # networkx < 3.3


def d_separated(G: nx.DiGraph, xs, ys, given=()) -> bool:
    H, (X, Y, Z) = _prepare(G, xs, ys, given)
    if not X or not Y:
        raise PlateError("query", "both sides of an independence query need at least one node")
    for a, b, what in ((X, Y, "both sides"), (X, Z, "a side and the conditioning set"),
                       (Y, Z, "a side and the conditioning set")):
        if a & b:
            raise PlateError(", ".join(sorted(a & b)), f"appears in {what}")
    constants = {n for n in H if _is_constant(H.nodes[n])} - X - Y
    return _d_separated(H, X, Y, Z | constants)


def markov_blanket(G: nx.DiGraph, node: str) -> set[str]:
    H, (S,) = _prepare(G, [node])
    (n,) = S
    blanket = set(H.predecessors(n)) | set(H.successors(n))
    for child in H.successors(n):
        blanket |= set(H.predecessors(child))
    blanket.discard(n)
    return {m for m in blanket if not _is_constant(H.nodes[m])}


def parse_query(text: str) -> tuple[list[str], list[str], list[str]]:
    """``"x _|_ theta | z"`` -> (["x"], ["theta"], ["z"]); ``⊥`` works too; commas separate names."""
    parts = re.split(r"_\|_|⊥", text)
    if len(parts) != 2:
        raise PlateError("query", f"write it as 'xs _|_ ys | given', got {text!r}")
    left, right = parts
    ys, _, given = right.partition("|")

    def split(s: str) -> list[str]:
        # commas inside an index (x[1,2]) do not separate names
        return [t.strip() for t in re.split(r",(?![^\[]*\])", s) if t.strip()]

    return split(left), split(ys), split(given)
