"""The factorization view: the joint density written from the graph as a product over plates.

Each random site contributes p(site | parents); a factor sits inside the products of its plates; a parent
carries the indices of the plates it shares with the child (``theta`` without index under ``prod_j`` when
theta lives on the K plate). Hyperparameters are fixed and left out, learned parameters subscript the
density (``p_theta(x_i | z_i)``), covariates are conditioned on (``p(y, w | X)``), and deterministic sites
are replaced by what they are computed from.
"""

from __future__ import annotations

import networkx as nx

from .plategraph import node_indices, plate_path, plate_rank, symbol
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

    rank = plate_rank(G)
    groups: dict[tuple[str, ...], list[str]] = {(): []}
    first: dict[tuple[str, ...], int] = {}
    for n in random:
        path = plate_path(G, n, rank)
        cond, params = _parents(G, n)
        plates = G.nodes[n]["plates"]
        head = symbol(G, n, fmt, node_indices(G, n, path))
        given = [symbol(G, u, fmt, node_indices(G, u, plates)) for u in cond]
        factor = f"{density(params)}({head}{bar + ', '.join(given) if given else ''})"
        for k in range(len(path) + 1):
            groups.setdefault(path[:k], [])
            first.setdefault(path[:k], _order(G, n))
        groups[path].append(factor)

    def size(path: tuple[str, ...]) -> int:
        return len(groups[path]) + sum(size(c) for c in children(path))

    def children(path: tuple[str, ...]) -> list[tuple[str, ...]]:
        kids = [p for p in groups if len(p) == len(path) + 1 and p[: len(path)] == path]
        return sorted(kids, key=lambda p: (size(p), first[p]))

    sep = r" \, " if latex else " "

    def items(path: tuple[str, ...]) -> list[str]:
        out = list(groups[path])
        kids = children(path)
        for i, kid in enumerate(kids):
            inner = items(kid)
            body = sep.join(inner)
            if len(inner) > 1 and (i < len(kids) - 1):
                body = rf"\left[ {body} \right]" if latex else f"[{body}]"
            plate = kid[-1]
            info = G.graph["plates"][plate]
            if latex:
                out.append(rf"\prod_{{{latex_symbol(info['index'])}=1}}^{{{latex_symbol(plate)}}} {body}")
            else:
                out.append(f"prod_{info['index']} {body}")
        return out

    lhs = [symbol(G, n, fmt) for n in observed + latent]
    cov = [symbol(G, n, fmt) for n in covariates]
    left = f"p({', '.join(lhs)}{bar + ', '.join(cov) if cov else ''})"
    return f"{left} = {sep.join(items(()))}"
