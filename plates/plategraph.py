"""`PlateGraph`: a model's plate graph (a `networkx.DiGraph`) and the three views drawn from it."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Iterable

import networkx as nx

from . import symbols

RANDOM_KINDS = ("latent", "observed", "deterministic")


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


class PlateGraph:
    """A model's structure as a plate graph.

    Attributes:
        networkx: the generative graph, a `networkx.DiGraph`. Node attributes: ``kind`` (latent, observed,
            deterministic, parameter, hyperparameter), ``distribution`` (plain text such as
            ``"Beta(alpha, beta)"`` or ``None``), ``plates`` (plate names, outermost first), ``label``,
            ``discrete``, ``enumerated``, ``role`` (``"covariate"`` for an observed input that is not
            modelled), ``value`` (a hyperparameter's value). ``networkx.graph["plates"]`` maps each plate
            to ``{"size", "index", "dim"}``.
        guide: the inference arrows of an amortized guide (``q(z | x)``), a `networkx.DiGraph` over the same
            node names plus the guide's own parameter nodes, or ``None``. Kept apart from `networkx` so that
            the generative graph stays a DAG for independence queries.
        name: the model's name, if known.
    """

    def __init__(self, G: nx.DiGraph, guide: nx.DiGraph | None = None, name: str | None = None,
                 show_distributions: bool = True):
        self.networkx = G
        self.guide = guide
        self.name = name
        self.show_distributions = show_distributions

    # --- reading -------------------------------------------------------------------------------------
    @property
    def plates(self) -> dict[str, dict]:
        """Plate name -> ``{"size": n, "index": letter, "dim": d}``."""
        return self.networkx.graph["plates"]

    def nodes(self, kind: str | None = None) -> list[str]:
        """Node names in program order, optionally only those of one kind."""
        G = self.networkx
        names = sorted(G, key=lambda n: G.nodes[n].get("order", 0))
        return [n for n in names if kind is None or G.nodes[n]["kind"] == kind]

    def __repr__(self) -> str:
        kinds = {}
        for n in self.networkx:
            kinds.setdefault(self.networkx.nodes[n]["kind"], []).append(n)
        inner = "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items())
        plates = ", ".join(f"{p}={i['size']}" for p, i in self.plates.items())
        return f"PlateGraph({self.name or 'model'}: {inner}; plates {plates or 'none'})"

    # --- drawing -------------------------------------------------------------------------------------
    def to_dot(self) -> str:
        """The diagram as Graphviz DOT source."""
        from .dot import to_dot

        return to_dot(self.drawing())

    def to_tikz(self) -> str:
        """The diagram as a standalone LaTeX/TikZ document (layout by Graphviz ``dot``)."""
        from .tikz import to_tikz

        return to_tikz(self.drawing())

    def drawing(self) -> "PlateGraph":
        """What the diagram draws: this graph, or with each chain's time plate unrolled into its first
        steps, an ellipsis and its last step (`plates.timeslices`)."""
        from .timeslices import drawing_graph

        D = drawing_graph(self.networkx, self.show_distributions)
        if D is self.networkx:
            return self
        return PlateGraph(D, self.guide, name=self.name, show_distributions=self.show_distributions)

    def render(self, path: str | Path) -> Path:
        """Write the diagram; the format comes from the suffix: .dot .svg .png .pdf .tex.

        Returns the path written. Without Graphviz's ``dot`` the DOT file is written next to `path`
        (same stem, ``.dot``), that path is returned and a one-line `GraphvizMissingWarning` is issued.
        """
        from .render import render

        return render(self, path)

    # --- the factorization view ----------------------------------------------------------------------
    def factorization(self, latex: bool = False) -> str:
        """The joint density written from the graph as a product over plates, e.g.
        ``p(x, z, theta, pi) = p(pi) prod_k p(theta_k) prod_j p(z_j | pi) p(x_j | theta, z_j)``."""
        from .factor import factorization

        return factorization(self.networkx, latex=latex)

    # --- independence --------------------------------------------------------------------------------
    def unrolled(self) -> nx.DiGraph:
        """The graph with every plate unrolled: ``x[3]`` is the third copy of ``x`` (indices from 1)."""
        from .query import unroll

        return unroll(self.networkx)

    def d_separated(self, xs, ys, given=()) -> bool:
        """Whether `xs` and `ys` are d-separated given `given` (names, or one name).

        A name is a site name (``"flips"``) or the symbol the diagram draws (``"x"``, ``"θ"``,
        ``"\\theta"``); a symbol drawn for two nodes is refused. A plain name stands for every copy of
        its node (``"theta"``: theta_1, ..., theta_K), given or not as a whole; an indexed name
        (``"x[1]"``, ``"z[2]"``, indices from 1 like the plate labels) is one copy, and the query is then
        answered on the unrolled graph. Constants (hyperparameters, parameters, covariates) are fixed, so
        they are always conditioned on.
        """
        from .query import d_separated

        return d_separated(self.networkx, xs, ys, given)

    def markov_blanket(self, node: str) -> set[str]:
        """Parents, children and the children's other parents of `node` (a site name or a drawn symbol;
        ``"z[2]"`` for one copy), without the constants; answered in site names."""
        from .query import markov_blanket

        return markov_blanket(self.networkx, node)

    def query(self, text: str) -> bool:
        """Answer ``"x _|_ theta | z"`` (also ``⊥``); several names separate with commas; names as in
        `d_separated`."""
        from .query import parse_query

        xs, ys, given = parse_query(text)
        return self.d_separated(xs, ys, given)


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
