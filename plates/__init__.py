"""Plate diagrams the way the textbook draws them, the factorization they stand for, and d-separation.

    >>> import plates
    >>> g = plates.graph("coin")
    >>> g.networkx.nodes["p"]["kind"], g.networkx.nodes["flips"]["plates"]
    ('latent', ('N',))
    >>> g.factorization()
    'p(flips, p) = p(p) prod_i p(flips_i | p)'
    >>> g.d_separated("flips[1]", "flips[2]", given="p")
    True

`graph(model, data, **options)` traces the model once (see `plates.extract`) and returns a `PlateGraph`
whose `networkx` DiGraph is the graph view; `factorization()` writes the second view from it;
`to_dot()`, `render(path)` (.dot .svg .png .pdf .tex) draw it. The sites of a loop over time (``x_0, x_1,
...`` in ``pyro.markov``) become one node on a time plate (`plates.markov`); a Markov chain or HMM is drawn
unrolled, ``x_1 -> x_2 -> x_3 -> ... -> x_T`` (`plates.timeslices`), and factorized as
``p(x_1) prod_{t=2}^{T} p(x_t | x_{t-1})``.

Why not Pyro's ``render_model``: it is the starting point (``get_model_relations``' provenance tracking is
reused here), but it labels plates by name only (``N``, not ``i = 1..N (N = 10)``), has no notion of
hyperparameters or covariates (``alpha`` and a regression's ``x_i`` vanish), merges every argument of a
distribution into one dependency set, writes distributions in a legend rather than at the node, cannot
draw overlapping plates (it raises), and knows nothing of guides. The textbook conventions, the guide
overlay, the factorization and the independence queries all need a graph we own, so `plates` builds a
networkx graph from the trace and writes DOT and TikZ from it itself.

Errors: `PlateError` (bad option, node or data; ``field: problem`` on one line), a subclass of the suite's
one `InputError` (a model's own data fields raise `ppl_models.DataError`, the other subclass). When Graphviz ``dot``
is missing, `render(path)` still writes the DOT source (``path`` with suffix ``.dot``), returns the path
it wrote and warns once with a one-line `GraphvizMissingWarning`; compare the returned suffix with the
requested one. `to_tikz()` alone raises `GraphvizNotFound` (it needs dot's layout).
"""

from ppl_models.errors import InputError

from .build import graph
from .errors import GraphvizMissingWarning, GraphvizNotFound, PlateError
from .plategraph import PlateGraph
from .query import parse_query
from .render import dot_program

__all__ = ["graph", "PlateGraph", "PlateError", "InputError", "GraphvizNotFound", "GraphvizMissingWarning", "parse_query",
           "dot_program"]
