"""Independence queries on the plate graph or its unrolled copy, answered by networkx's d-separation.

A node is named by its site name (``flips``) or by the symbol the diagram draws for it (``x``, also
spelled ``θ`` or ``\\theta``). A plain name stands for all the copies of its node; an indexed name
(``"x[2]"``, ``"x[2,1]"``, indices from 1 like the plate labels) is one copy in the unrolled graph, where
``theta_k -> x_j`` (K and N plates) links every theta copy to every x copy and shared plates link copy
to copy. A query with plain names only is answered on the plate graph, which gives the same answer as
the unrolled graph with every copy named: each copy of a node is given exactly when the node is, and each
copy has an arrow to (and from) some copy of every child (and parent), so an active trail of either graph
maps onto an active walk of the other. A query with an indexed name is answered on the unrolled graph,
its plain names standing for all their copies. A sequence folded into a time plate (`plates.markov`)
is always queried unrolled, where ``x[t-1] -> x[t]``; a program's site name (``x_3``) stands for its
step's copies. Constants (hyperparameters, parameters, covariates) are
fixed, so they are always conditioned on.
"""

from __future__ import annotations

import itertools
import re

import networkx as nx

from .errors import PlateError
from .markov import edge_copies, has_chain, site_copies
from .symbols import canonical

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
    for u, v, data in G.edges(data=True):
        if "lag" in data:  # into a sequence on a time plate (plates.markov): step t from step t - lag
            U.add_edges_from(edge_copies(G, u, v, data["lag"], data["first"], lambda n: _copies(G, n), copy_name))
            continue
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


def _listing(G: nx.DiGraph) -> str:
    """The graph's nodes for an error message, each with the symbol it is drawn as when that differs."""
    out = []
    for n in G:
        label = G.nodes[n].get("label", n)
        out.append(n if label == n else f"{n} (drawn {label})")
    return ", ".join(out)


def _index_hint(G: nx.DiGraph, key: str, written: str) -> PlateError | None:
    """``theta_i`` (a symbol with its plate's index letters, as the diagram writes it) -> what to write."""
    base, _, sub = key.rpartition("_")
    if not base or not sub:
        return None
    try:
        node = resolve(G, base)
    except PlateError:
        return None
    letters = [G.graph["plates"][p]["index"] for p in G.nodes[node].get("plates", ())]
    if letters and set(sub.replace(",", "").strip("{}")) <= set(letters):
        ones = ",".join("1" for _ in letters)
        return PlateError(written, f"write {base} for all its copies or {base}[{ones}] for one (indices from 1, "
                                   "as in the plate label)")
    return None


def resolve(G: nx.DiGraph, name: str) -> str:
    """The node `name` refers to: a site name, or the symbol the diagram draws (``x`` for a site ``flips``
    labelled x; spelled ``theta``, ``θ`` or ``\\theta``).

    A site name wins over another node's symbol; a symbol drawn for two nodes is refused, naming both.

    Raises:
        PlateError: no such node, or an ambiguous symbol (one line).
    """
    written = name.strip()
    if written in G:
        return written
    key = canonical(written)
    drawn = [n for n in G if G.nodes[n].get("label") == key]
    if len(drawn) == 1:
        return drawn[0]
    if len(drawn) > 1:
        both = ", ".join(repr(n) for n in drawn[:-1]) + f" and {drawn[-1]!r}"
        raise PlateError(written, f"is drawn for {len(drawn)} nodes, the sites {both}; name the site you mean")
    if key in G:  # a site name spelled in Unicode or LaTeX (``θ`` for a site theta drawn otherwise)
        return key
    hint = _index_hint(G, key, written)
    if hint is not None:
        raise hint
    raise PlateError(written, f"is not a node of the graph; nodes: {_listing(G)}")


def _expand(G: nx.DiGraph, name: str, unrolled: bool) -> set[str]:
    """The nodes a query term stands for: the node itself, or in the unrolled graph one copy (indexed)
    or every copy (a plain name)."""
    step = site_copies(G, name, lambda n: _copies(G, n), copy_name)  # x_3, a step of a folded sequence
    if step is not None:
        return step
    m = _INDEXED.match(name)
    base = resolve(G, m.group(1) if m else name)
    if not unrolled:
        return {base}
    plates = G.nodes[base].get("plates", ())
    if not m:
        return {copy_name(base, idx) for idx in _copies(G, base)}
    index = tuple(int(i) for i in m.group(2).split(",") if i.strip())
    if len(index) != len(plates):
        raise PlateError(name, f"needs {len(plates)} indices (plates {', '.join(plates) or 'none'})")
    for p, i in zip(plates, index):
        size = G.graph["plates"][p]["size"]
        if not 1 <= i <= size:
            raise PlateError(name, f"index {i} is outside 1..{size} of plate {p}")
    return {copy_name(base, index)}


def _prepare(G: nx.DiGraph, *groups) -> tuple[nx.DiGraph, list[dict[str, set[str]]]]:
    """The graph to query (the unrolled one when a name is indexed) and, per group, each term's nodes."""
    names = [_names(g) for g in groups]
    unrolled = any(_INDEXED.match(n) for group in names for n in group)
    folded = G.graph.get("folded", {})  # a chain's plate graph has a self-loop: the unrolled graph answers
    unrolled = unrolled or has_chain(G) or any(n.strip() in folded for group in names for n in group)
    H = unroll(G) if unrolled else G
    return H, [{n.strip(): _expand(G, n, unrolled) for n in group} for group in names]


def _overlap(a: dict[str, set[str]], b: dict[str, set[str]]) -> str | None:
    """The terms of `a` and `b` that share a node, written as the user wrote them, or ``None``."""
    shared = [(s, t) for s in a for t in b if a[s] & b[t]]
    if not shared:
        return None
    return ", ".join(sorted({s for s, _ in shared} | {t for _, t in shared}))


def _d_separated(H: nx.DiGraph, xs: set, ys: set, zs: set) -> bool:
    if hasattr(nx, "is_d_separator"):
        return nx.is_d_separator(H, xs, ys, zs)
    return nx.d_separated(H, xs, ys, zs)  # networkx < 3.3


def d_separated(G: nx.DiGraph, xs, ys, given=()) -> bool:
    """Whether every node of `xs` is d-separated from every node of `ys` given `given` (names or lists
    of names, see the module's docstring), the constants given too."""
    H, terms = _prepare(G, xs, ys, given)
    X, Y, Z = (set().union(*t.values()) for t in terms)
    if not X or not Y:
        raise PlateError("query", "both sides of an independence query need at least one node")
    for a, b, what in ((0, 1, "both sides"), (0, 2, "a side and the conditioning set"),
                       (1, 2, "a side and the conditioning set")):
        shared = _overlap(terms[a], terms[b])
        if shared:
            raise PlateError(shared, f"appears in {what}")
    constants = {n for n in H if _is_constant(H.nodes[n])} - X - Y
    return _d_separated(H, X, Y, Z | constants)


def markov_blanket(G: nx.DiGraph, node: str) -> set[str]:
    """Parents, children and the children's other parents of `node` (a site name or a drawn symbol; an
    indexed copy answers in the unrolled graph), the constants left out."""
    H, (terms,) = _prepare(G, [node])
    (S,) = terms.values()
    blanket = set()
    for n in S:
        blanket |= set(H.predecessors(n)) | set(H.successors(n))
        for child in H.successors(n):
            blanket |= set(H.predecessors(child))
    return {m for m in blanket - S if not _is_constant(H.nodes[m])}


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
