"""`PlateGraph`: a model's plate graph (a `networkx.DiGraph`) and the three views drawn from it."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

RANDOM_KINDS = ("latent", "observed", "deterministic")


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
