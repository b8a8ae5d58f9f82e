"""Reading a plate graph's nodes for a drawing: each node's symbol with its plate indices, its distribution
written out (``Bernoulli(theta_z)``), and the plates' nesting order. The renderers (`dot`, `tikz`,
`factor`, `timeslices`) and `PlateGraph` all read nodes through these, so they live below all of them.

    >>> import networkx as nx
    >>> G = nx.DiGraph(plates={"N": {"size": 3, "index": "i", "dim": -1}})
    >>> G.add_node("x", label="x", plates=("N",), dist_name="Bernoulli", dist_args=(("probs", "symbol", "p"),))
    >>> G.add_node("p", label="p", plates=())
    >>> symbol(G, "x", "plain", node_indices(G, "x")), distribution_text(G, "x")
    ('x_i', 'Bernoulli(p)')
"""

from __future__ import annotations

import html
from typing import Iterable

import networkx as nx

from . import symbols


def _formatter(fmt: str):
    return {"plain": symbols.plain, "unicode": symbols.unicode, "html": symbols.html_label,
            "latex": symbols.latex}[fmt]


def node_indices(G: nx.DiGraph, node: str, within: Iterable[str] | None = None) -> tuple[str, ...]:
    """The index letters of `node`'s plates (only those in `within`, when given)."""
    plates = G.nodes[node].get("plates", ())
    if within is not None:
        within = set(within)
        plates = tuple(p for p in plates if p in within)
    return tuple(G.graph["plates"][p]["index"] for p in plates)


def symbol(G: nx.DiGraph, node: str, fmt: str = "plain", index: tuple[str, ...] = ()) -> str:
    """`node`'s label in format `fmt` (plain, unicode, html, latex) with index subscripts."""
    return _formatter(fmt)(G.nodes[node]["label"], index)


def distribution_text(G: nx.DiGraph, node: str, fmt: str = "plain", first: bool = False) -> str | None:
    """``Beta(alpha, beta)`` / ``Bernoulli(theta_z)`` for a site, in format `fmt`; ``None`` otherwise.

    For a sequence folded into a time plate (`plates.markov`): its later steps' distribution, or with
    `first` its first step's when that differs (``Categorical(probs)`` against ``Categorical(probs[x_{t-1}])``).
    """
    data = G.nodes[node]
    prefix = "first_" if first and data.get("first_dist_name") else ""
    name = data.get(prefix + "dist_name")
    if not name:
        return None
    sym = _formatter(fmt)

    def s(n, index: tuple[str, ...] = ()) -> str:
        if isinstance(n, tuple):  # a step of a folded sequence: ("x", "t-1")
            n, step = n
            index = index + (step,)
        return sym(G.nodes[n]["label"], index)

    def text(t: str) -> str:
        if fmt == "html":
            return html.escape(t)
        if fmt == "latex":
            return r"\mathrm{" + t + "}" if t.isalpha() else t.replace("_", r"\_")
        return t

    parts = []
    for arg in data.get(prefix + "dist_args", ()):
        arg_name, form = arg[0], arg[1]
        if form == "const":
            body = text(arg[2]) if arg[2].isalpha() else (html.escape(arg[2]) if fmt == "html" else arg[2])
        elif form == "symbol":
            body = s(arg[2])
        elif form == "call":
            body = f"{s(arg[2])}({', '.join(s(n) for n in arg[3])})"
        elif form == "sub":
            body = s(arg[2], tuple(G.nodes[n]["label"] for n in arg[3]))
        elif form == "index":  # a table row picked by steps of a sequence: probs[x_{t-1}]
            body = f"{s(arg[2])}[{', '.join(s(n) for n in arg[3])}]"
        else:
            body = f"{text('f')}({', '.join(s(n) for n in arg[2])})"
        if arg_name == "logits":
            body = f"{text('logits')}={body}"
        parts.append(body)
    return f"{text(name)}({', '.join(parts)})"



def plate_rank(G: nx.DiGraph) -> dict[str, tuple]:
    """A global order of plates, outermost first: plates holding more nodes sit outside, then first seen."""
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    for n in sorted(G, key=lambda n: G.nodes[n].get("order", 0)):
        for p in G.nodes[n].get("plates", ()):
            count[p] = count.get(p, 0) + 1
            first.setdefault(p, len(first))
    return {p: (-count[p], first[p]) for p in count}


def plate_path(G: nx.DiGraph, node: str, rank: dict[str, tuple] | None = None) -> tuple[str, ...]:
    """`node`'s plates ordered outermost first by `plate_rank`, so that shared plates nest the same way.

    The one-step plates of a drawn time slice (``x_2`` of an unrolled chain, `plates.timeslices`) give
    the node its index but are no box, so they are left out."""
    rank = rank if rank is not None else plate_rank(G)
    boxes = [p for p in G.nodes[node].get("plates", ()) if not G.graph["plates"][p].get("slice_of")]
    return tuple(sorted(boxes, key=lambda p: rank.get(p, (0, 0))))
