"""The factorization view: the joint density written from the graph as a product over plates.

Each random site contributes p(site | parents); a factor sits inside the products of its plates; a parent
carries the indices of the plates it shares with the child (``theta`` without index under ``prod_j`` when
theta lives on the K plate). Hyperparameters are fixed and left out, learned parameters subscript the
density (``p_theta(x_i | z_i)``), covariates are conditioned on (``p(y, w | X)``), and deterministic sites
are replaced by what they are computed from.

A sequence folded into a time plate (`plates.markov`) is written the textbook way: a variable whose steps
depend on earlier ones as its first step and the product over the later ones, the other variables of the
plate as one product over every step, e.g.
``p(x_1 | pi) prod_{t=2}^{T} p(x_t | x_{t-1}, A) prod_{t=1}^{T} p(y_t | x_t, B)``.
"""

from __future__ import annotations

import networkx as nx

from .markov import is_split, step_text
from .labels import node_indices, plate_path, plate_rank, symbol
from .symbols import latex as latex_symbol


def _order(G: nx.DiGraph, n: str) -> int:
    return G.nodes[n].get("order", 0)


def _is_random(G: nx.DiGraph, n: str) -> bool:
    d = G.nodes[n]
    return d["kind"] in ("latent", "observed") and d.get("role") != "covariate"


def _parents(G: nx.DiGraph, n: str) -> tuple[list[str], list[str]]:
    """(conditioning parents, parameters) of `n`, looking through deterministic sites."""
    cond, params, seen = set(), set(), set()
    todo = list(G.predecessors(n))
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        kind = G.nodes[u]["kind"]
        if kind == "deterministic":
            todo.extend(G.predecessors(u))
        elif kind == "parameter":
            params.add(u)
        elif kind in ("latent", "observed"):
            cond.add(u)
    key = lambda u: _order(G, u)  # noqa: E731
    return sorted(cond, key=key), sorted(params, key=key)


def _step_lags(data: dict, phase: str) -> tuple[int, ...]:
    """The steps back an edge's parent is at the child's first step (`phase` ``first``) or at a later one;
    an edge off the time plates is the same copy (lag 0)."""
    if "lag" not in data:
        return (0,)
    if phase == "first":
        return (0,) if data["first"] else ()
    if phase == "any":  # through a deterministic step: whichever applies
        return tuple(sorted(set(data["lag"]) | ({0} if data["first"] else set())))
    return data["lag"]


def _step_parents(G: nx.DiGraph, n: str, phase: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(conditioning parents with their lag, parameters) of a step of the folded node `n` at `phase`
    (``first``: step 1; ``rest``/``all``: a step t), looking through deterministic sites."""
    cond, params, seen = set(), set(), set()
    todo = [(u, lag) for u, _, data in G.in_edges(n, data=True) for lag in _step_lags(data, phase)]
    while todo:
        u, lag = todo.pop()
        if (u, lag) in seen:
            continue
        seen.add((u, lag))
        kind = G.nodes[u]["kind"]
        if kind == "deterministic":
            todo.extend((w, lag + extra) for w, _, data in G.in_edges(u, data=True)
                        for extra in _step_lags(data, "any"))
        elif kind == "parameter":
            params.add(u)
        elif kind in ("latent", "observed"):
            cond.add((u, lag))
    on_time = lambda u: any(G.graph["plates"][p].get("time") for p in G.nodes[u].get("plates", ()))  # noqa: E731
    key = lambda ul: (not on_time(ul[0]), _order(G, ul[0]), ul[1])  # noqa: E731  (the steps first: x_{t-1})
    return sorted(cond, key=key), sorted(params, key=lambda u: _order(G, u))


def _indices(G: nx.DiGraph, n: str, within, step: str) -> tuple[str, ...]:
    """`n`'s index letters on the plates in `within`, its time plate's written `step` (``1``, ``t-1``)."""
    plates = G.graph["plates"]
    return tuple(step if plates[p].get("time") else plates[p]["index"]
                 for p in G.nodes[n].get("plates", ()) if p in set(within))


def _on_chain(G: nx.DiGraph, n: str) -> bool:
    """Whether `n` lives on a time plate whose steps depend on earlier ones."""
    return any(G.graph["plates"][p].get("markov") for p in G.nodes[n].get("plates", ()))


def _phases(G: nx.DiGraph, n: str) -> tuple[str | None, ...]:
    """How `n`'s factor is written: once (``None``); on a chain's plate apart at the first step and for
    the later ones (``first``, ``rest``), or for every step alike (``all``)."""
    if not _on_chain(G, n):
        return (None,)
    return ("first", "rest") if is_split(G, n) else ("all",)


def factorization(G: nx.DiGraph, latex: bool = False) -> str:
    fmt = "latex" if latex else "plain"
    nodes = sorted(G, key=lambda n: _order(G, n))
    random = [n for n in nodes if _is_random(G, n)]
    covariates = [n for n in nodes if G.nodes[n]["kind"] == "observed" and G.nodes[n].get("role") == "covariate"]
    observed = [n for n in random if G.nodes[n]["kind"] == "observed"]
    data_plates = {p for n in observed for p in G.nodes[n]["plates"]}
    latent = sorted((n for n in random if n not in observed),  # local latents first, as in p(x, z, theta)
                    key=lambda n: (-len(data_plates & set(G.nodes[n]["plates"])), _order(G, n)))
    bar = r" \mid " if latex else " | "

    def density(params: list[str]) -> str:
        if not params:
            return "p"
        subs = ",".join(symbol(G, p, fmt) for p in params)
        return f"p_{{{subs}}}" if latex or len(params) > 1 else f"p_{subs}"

    def factor(n: str, path: tuple[str, ...], phase: str | None) -> str:
        plates = G.nodes[n]["plates"]
        if phase is None:
            cond, params = _parents(G, n)
            head = symbol(G, n, fmt, node_indices(G, n, path))
            given = [symbol(G, u, fmt, node_indices(G, u, plates)) for u in cond]
        else:
            at_first = phase == "first"
            timed, params = _step_parents(G, n, phase)
            head = symbol(G, n, fmt, _indices(G, n, path, step_text(0, at_first)))
            given = [symbol(G, u, fmt, _indices(G, u, plates, step_text(lag, at_first))) for u, lag in timed]
        return f"{density(params)}({head}{bar + ', '.join(given) if given else ''})"

    rank = plate_rank(G)
    groups: dict[tuple[str, ...], list[tuple[str | None, str]]] = {(): []}
    first: dict[tuple[str, ...], int] = {}
    for n in random:
        path = plate_path(G, n, rank)
        for k in range(len(path) + 1):
            groups.setdefault(path[:k], [])
            first.setdefault(path[:k], _order(G, n))
        groups[path].extend((phase, factor(n, path, phase)) for phase in _phases(G, n))

    def size(path: tuple[str, ...]) -> int:
        return len(groups[path]) + sum(size(c) for c in children(path))

    def children(path: tuple[str, ...]) -> list[tuple[str, ...]]:
        kids = [p for p in groups if len(p) == len(path) + 1 and p[: len(path)] == path]
        return sorted(kids, key=lambda p: (size(p), first[p]))

    sep = r" \, " if latex else " "

    def product(plate: str, body: str, start: int | None = None) -> str:
        info = G.graph["plates"][plate]
        if latex:
            return rf"\prod_{{{latex_symbol(info['index'])}={start or 1}}}^{{{latex_symbol(plate)}}} {body}"
        if start is None:
            return f"prod_{info['index']} {body}"
        return f"prod_{{{info['index']}={start}}}^{{{plate}}} {body}"

    def bracket(inner: list[str], more_follows: bool) -> str:
        body = sep.join(inner)
        if len(inner) > 1 and more_follows:
            body = rf"\left[ {body} \right]" if latex else f"[{body}]"
        return body

    def items(path: tuple[str, ...], phase: str | None = None) -> list[str]:
        """The factors and products of `path`; below a chain's time plate only those of one `phase`."""
        out = [f for ph, f in groups[path] if phase is None or ph == phase]
        kids = [(kid, items(kid, phase)) for kid in children(path)
                if phase is not None or not G.graph["plates"][kid[-1]].get("markov")]
        kids = [(kid, inner) for kid, inner in kids if inner]
        chains = [kid for kid in children(path) if phase is None and G.graph["plates"][kid[-1]].get("markov")]
        for i, (kid, inner) in enumerate(kids):
            out.append(product(kid[-1], bracket(inner, i < len(kids) - 1 or bool(chains))))
        for j, kid in enumerate(chains):
            out.extend(chain(kid, last=j == len(chains) - 1))
        return out

    def chain(kid: tuple[str, ...], last: bool) -> list[str]:
        """A chain's time plate: the first step's factors, then prod_{t=2}^{T} of the later steps' and
        prod_{t=1}^{T} of the variables that are alike at every step."""
        out = items(kid, "first")
        parts = [(inner, start) for inner, start in ((items(kid, "rest"), 2), (items(kid, "all"), 1)) if inner]
        for j, (inner, start) in enumerate(parts):
            out.append(product(kid[-1], bracket(inner, j < len(parts) - 1 or not last), start))
        return out

    lhs = [symbol(G, n, fmt) for n in observed + latent]
    cov = [symbol(G, n, fmt) for n in covariates]
    left = f"p({', '.join(lhs)}{bar + ', '.join(cov) if cov else ''})"
    return f"{left} = {sep.join(items(()))}"
