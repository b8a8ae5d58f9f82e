"""Sequences: the sites of a loop over time folded into one node per variable on a time plate.

A program that runs over time writes one site per step (``for t in pyro.markov(range(T))`` with sites
``x_{t}`` and ``y_{t}``), so its trace has ``x_0, x_1, ..., y_0, y_1, ...``. The textbook draws one
variable per role: ``x_t`` on a time plate ``t = 1..T`` whose step t depends on step t-1, and writes
``p(x_1) prod_{t=2}^{T} p(x_t | x_{t-1}) prod_{t=1}^{T} p(y_t | x_t)``.

Which sites are the steps of one variable: sites named ``stem_<n>`` (or ``stem<n>``) with consecutive
integers n that have the same kind and plates (and, after the first step, the same distribution family),
that ran inside ``pyro.markov`` (two steps or more) or whose step t depends on step t-1 (three or more),
or that are tied step by step to such a variable (an HMM's ``y_t`` to ``x_t``). The dependencies come
from the extraction's provenance (which site's value fed which site's distribution) and must be the same
at every step t >= 2 (the first step may differ: it has no step before it); every site outside that
depends on one step must depend on all of them. Anything else is left as it is, one node per site.

The folded graph (`fold_chains`):

- the node is named by the stem (``x``; ``x_t`` when another node is called ``x``); ``sites`` lists the
  program's sites in time order; the time plate is inserted after the plates all the sequence's
  variables share (``x`` on sequences: plates ``(sequences, T)``);
- the time plate is ``{"size": T, "index": "t", "dim": None, "time": True, "markov": ...}``; ``markov``
  is true when a step depends on an earlier one or the first step differs (then the plate is drawn as an
  unrolled chain and written with ``p(x_1)`` apart), false for steps that are independent copies (then it
  is an ordinary plate);
- every edge into a folded node carries ``lag``, the steps back its parent is at a step t >= 2 (``(0,)``
  the same step, ``(1,)`` the step before: ``x -> x`` with ``lag=(1,)`` is the transition), and ``first``,
  whether the parent (at the same step) feeds step 1. The plate graph then has a self-loop, so
  independence queries are answered on the unrolled graph, where ``x[t-1] -> x[t]``;
- a node whose first step differs (other parents or another distribution: ``first_differs``) keeps that
  step's distribution as ``first_dist_name``, ``first_dist_args`` and ``first_distribution``;
  distribution arguments name a step of a folded node as ``(node, "t-1")``;
- ``G.graph["folded"]`` maps each program site to ``(node, step)``, steps counted from 1.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Callable, Iterator

import networkx as nx

from .labels import distribution_text

_STEP_NAME = re.compile(r"^(?P<stem>.*[^\d_])(?P<sep>_?)(?P<step>\d+)$")
_SITE_KINDS = ("latent", "observed", "deterministic")


@dataclass
class _Group:
    """The sites ``stem_<n>`` of one variable, by step (counted from 1)."""

    stem: str
    steps: dict[int, str]
    start: int  # the integer in the first site's name
    markov: bool  # every step after the first ran inside pyro.markov

    @property
    def span(self) -> tuple[int, int]:
        return self.start, len(self.steps)


# --- finding the sequences --------------------------------------------------------------------------


def _candidates(G: nx.DiGraph, markov_sites: set[str]) -> list[_Group]:
    """Site nodes grouped by name stem, kept when their integers are consecutive and the steps alike."""
    by_stem: dict[tuple[str, str], dict[int, str]] = {}
    for n in G:
        m = _STEP_NAME.match(n)
        if m and G.nodes[n]["kind"] in _SITE_KINDS and G.nodes[n].get("role") != "covariate":
            by_stem.setdefault((m.group("stem"), m.group("sep")), {})[int(m.group("step"))] = n
    out = []
    for (stem, _), members in sorted(by_stem.items()):
        numbers = sorted(members)
        if len(numbers) < 2 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            continue
        steps = {i + 1: members[k] for i, k in enumerate(numbers)}
        if _alike(G, list(steps.values())):
            later = [steps[s] for s in steps if s > 1]
            out.append(_Group(stem, steps, numbers[0], all(n in markov_sites for n in later)))
    return out


def _alike(G: nx.DiGraph, members: list[str]) -> bool:
    """Same kind and plates at every step, the same distribution family after the first."""
    first = G.nodes[members[0]]
    for n in members[1:]:
        d = G.nodes[n]
        if (d["kind"], d.get("plates", ())) != (first["kind"], first.get("plates", ())):
            return False
        if d.get("dist_name") != G.nodes[members[1]].get("dist_name"):
            return False
    return True


def _where(groups: list[_Group]) -> dict[str, tuple[int, int]]:
    """Site -> (group number, step)."""
    return {n: (g, s) for g, group in enumerate(groups) for s, n in group.steps.items()}


def _signature(G: nx.DiGraph, groups: list[_Group], where: dict, g: int, step: int) -> frozenset | None:
    """The parents of step `step` of group `g` as ``(("g", group) or ("n", node), lag)`` pairs; ``None``
    when a parent is a later step or a step of a sequence over other times."""
    out = set()
    for u in G.predecessors(groups[g].steps[step]):
        if u in where:
            h, s = where[u]
            if groups[h].span != groups[g].span or s > step:
                return None
            out.add((("g", h), step - s))
        else:
            out.add((("n", u), 0))
    return frozenset(out)


def _regular(G: nx.DiGraph, groups: list[_Group], where: dict, g: int) -> bool:
    """The same parents at every step t >= 2, and children outside that depend on every step or none."""
    group = groups[g]
    signatures = [_signature(G, groups, where, g, s) for s in group.steps]
    if any(sig is None for sig in signatures) or len(set(signatures[1:])) > 1:
        return False
    members = set(group.steps.values())
    for n in members:
        for child in G.successors(n):
            if child in where:
                if groups[where[child][0]].span != group.span:
                    return False
            elif not members <= set(G.predecessors(child)):
                return False
    return True


def _self_lagged(G: nx.DiGraph, groups: list[_Group], where: dict, g: int) -> bool:
    """Step t depends on step t-1 of the same variable."""
    sig = _signature(G, groups, where, g, 2)
    return bool(sig) and (("g", g), 1) in sig


def _with_evidence(G: nx.DiGraph, groups: list[_Group], where: dict) -> set[int]:
    """The groups that are sequences in time: run in pyro.markov or a chain, or tied to such a group
    step by step (an HMM's observations)."""
    sure = {g for g, group in enumerate(groups)
            if group.markov or (len(group.steps) >= 3 and _self_lagged(G, groups, where, g))}
    todo = list(sure)
    while todo:
        g = todo.pop()
        for n in groups[g].steps.values():
            for m in itertools.chain(G.predecessors(n), G.successors(n)):
                h = where.get(m, (None,))[0]
                if h is not None and h not in sure and groups[h].span == groups[g].span:
                    sure.add(h)
                    todo.append(h)
    return sure


def _find_sequences(G: nx.DiGraph, markov_sites: set[str]) -> list[_Group]:
    """The variables to fold: candidates that are sequences and regular, given that the others are."""
    groups = _candidates(G, markov_sites)
    while True:
        where = _where(groups)
        keep = [g for g in _with_evidence(G, groups, where) if _regular(G, groups, where, g)]
        if len(keep) == len(groups):
            return groups
        groups = [groups[g] for g in sorted(keep)]


# --- folding ----------------------------------------------------------------------------------------


def fold_chains(G: nx.DiGraph, markov_sites: set[str], label: Callable[[str], str],
                index_letter: Callable[[str], str]) -> nx.DiGraph:
    """`G` with each sequence's sites folded into one node on a time plate (see the module docstring).

    Args:
        G: the plate graph of `plates.build`, one node per site.
        markov_sites: the sites that ran inside ``pyro.markov``.
        label: the label of a new node's name (the ``labels`` option applied).
        index_letter: the index letter of a plate's name (the ``plate_index`` option applied).
    """
    groups = _find_sequences(G, markov_sites)
    if not groups:
        return G
    where = _where(groups)
    names = _node_names(G, groups)
    plates = _time_plates(G, groups, index_letter)
    H = nx.DiGraph()
    H.graph.update(G.graph)
    H.graph["plates"] = {**G.graph["plates"], **{p: info for p, (_, info) in plates.items()}}
    H.graph["folded"] = {n: (names[g], s) for n, (g, s) in where.items()}
    for n, data in G.nodes(data=True):
        if n not in where:
            H.add_node(n, **data)
    span_plate = {span: p for p, (span, _) in plates.items()}
    for g, group in enumerate(groups):
        H.add_node(names[g], **_node_attributes(G, groups, g, span_plate[group.span], label))
    _add_edges(G, H, groups, where, names)
    for g in range(len(groups)):
        _describe(G, H, groups, where, names, g)
    for p in plates:
        H.graph["plates"][p]["markov"] = any(is_split(H, n) for n in H if p in H.nodes[n].get("plates", ()))
    return H


def _node_names(G: nx.DiGraph, groups: list[_Group]) -> list[str]:
    taken, out = set(G), []
    for group in groups:
        name = group.stem if group.stem not in taken else f"{group.stem}_t"
        taken.add(name)
        out.append(name)
    return out


def _time_plates(G: nx.DiGraph, groups: list[_Group], index_letter: Callable[[str], str]) -> dict:
    """One time plate per span of steps: name -> (span, info); ``T``, then ``T2``, ... if taken."""
    out = {}
    taken = set(G.graph["plates"])
    for span in sorted({g.span for g in groups}, key=lambda s: min(
            G.nodes[g.steps[1]].get("order", 0) for g in groups if g.span == s)):
        name = next(p for p in itertools.chain(["T"], (f"T{k}" for k in itertools.count(2))) if p not in taken)
        taken.add(name)
        out[name] = (span, {"size": span[1], "index": index_letter(name), "dim": None, "time": True})
    return out


def _shared_prefix(plate_tuples: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix = plate_tuples[0]
    for t in plate_tuples[1:]:
        k = 0
        while k < min(len(prefix), len(t)) and prefix[k] == t[k]:
            k += 1
        prefix = prefix[:k]
    return prefix


def _node_attributes(G: nx.DiGraph, groups: list[_Group], g: int, plate: str, label: Callable[[str], str]) -> dict:
    """The folded node's attributes: a later step's (the general one), the time plate inserted after the
    plates every variable of its span shares."""
    group = groups[g]
    rep = group.steps[2]
    attrs = dict(G.nodes[rep])
    span = group.span
    prefix = _shared_prefix([G.nodes[h.steps[1]].get("plates", ()) for h in groups if h.span == span])
    own = tuple(attrs.get("plates", ()))
    attrs.update(plates=own[: len(prefix)] + (plate,) + own[len(prefix):], label=label(group.stem),
                 order=G.nodes[group.steps[1]].get("order", 0), sites=tuple(group.steps.values()))
    return attrs


def _add_edges(G: nx.DiGraph, H: nx.DiGraph, groups: list[_Group], where: dict, names: list[str]) -> None:
    for u, v, data in G.edges(data=True):
        if u not in where and v not in where:
            H.add_edge(u, v, **data)
        elif v not in where:  # a child of every step
            H.add_edge(names[where[u][0]], v)
    for g, group in enumerate(groups):
        first = _signature(G, groups, where, g, 1)
        rest = _signature(G, groups, where, g, 2)
        for key in sorted({k for k, _ in first | rest}, key=str):
            parent = names[key[1]] if key[0] == "g" else key[1]
            lags = tuple(sorted(lag for k, lag in rest if k == key))
            H.add_edge(parent, names[g], lag=lags, first=(key, 0) in first)


def is_split(G: nx.DiGraph, n: str) -> bool:
    """Whether node `n`'s first step differs from its later steps: other parents (a chain's ``x``) or
    another distribution."""
    if G.nodes[n].get("first_differs"):
        return True
    for _, _, data in G.in_edges(n, data=True):
        if "lag" in data and (any(data["lag"]) or data["first"] != (0 in data["lag"])):
            return True
    return False


def _describe(G: nx.DiGraph, H: nx.DiGraph, groups: list[_Group], where: dict, names: list[str], g: int) -> None:
    """The folded node's distribution arguments, its later steps' and (when they differ) its first's."""
    group, node = groups[g], names[g]
    d = H.nodes[node]
    f, later = G.nodes[group.steps[1]], G.nodes[group.steps[2]]
    d["dist_args"] = _time_args(later.get("dist_args", []), 2, where, names, first=False)
    d["distribution"] = distribution_text(H, node, "plain")
    d["first_differs"] = (f.get("dist_name") != later.get("dist_name")
                          or _time_args(f.get("dist_args", []), 1, where, names, first=False) != d["dist_args"])
    if is_split(H, node):
        d["first_dist_name"] = f.get("dist_name")
        d["first_dist_args"] = _time_args(f.get("dist_args", []), 1, where, names, first=True)
        d["first_distribution"] = distribution_text(H, node, "plain", first=True)


def step_text(lag: int, first: bool = False) -> str:
    """The time index of a step `lag` steps back: ``t``, ``t-1``; ``1`` at the first step."""
    if first:
        return "1"
    return "t" if lag == 0 else f"t-{lag}"


def _time_args(args: list[tuple], step: int, where: dict, names: list[str], first: bool) -> list[tuple]:
    """Distribution arguments of one step written for every step: a site of a sequence becomes
    ``(node, "t-1")``; a subscript that is a step becomes an index in brackets (``probs[x_{t-1}]``)."""

    def ref(n):
        if isinstance(n, str) and n in where:
            g, s = where[n]
            return names[g], step_text(step - s, first)
        return n

    out = []
    for arg in args:
        name, form = arg[0], arg[1]
        if form == "symbol":
            out.append((name, form, ref(arg[2])))
        elif form == "call":
            out.append((name, form, ref(arg[2]), tuple(ref(n) for n in arg[3])))
        elif form == "sub":
            subs = tuple(ref(n) for n in arg[3])
            timed = any(isinstance(n, tuple) for n in subs) or isinstance(ref(arg[2]), tuple)
            out.append((name, "index" if timed else "sub", ref(arg[2]), subs))
        elif form == "f":
            out.append((name, form, tuple(ref(n) for n in arg[2])))
        else:
            out.append(arg)
    return out


# --- reading a folded graph -------------------------------------------------------------------------


def time_plate(G: nx.DiGraph, n: str) -> str | None:
    """The time plate node `n` lives on, if any."""
    for p in G.nodes[n].get("plates", ()):
        if G.graph["plates"][p].get("time"):
            return p
    return None


def has_chain(G: nx.DiGraph) -> bool:
    """Whether `G` has an edge between steps (its plate graph is then not a DAG)."""
    return any(any(data.get("lag", ())) for _, _, data in G.edges(data=True))


def edge_copies(G: nx.DiGraph, u: str, v: str, lag: tuple[int, ...], first: bool,
                copies: Callable[[str], list], copy_name: Callable[[str, tuple], str]) -> Iterator[tuple[str, str]]:
    """The unrolled copies of an edge into a folded node: at step 1 from the parent's step 1 when `first`,
    at step t >= 2 from its step t - l for each l in `lag` (a parent off the time plate: the same copy
    whenever the edge applies)."""
    pu, pv = G.nodes[u].get("plates", ()), G.nodes[v].get("plates", ())
    T = time_plate(G, v)
    for iv in copies(v):
        at = dict(zip(pv, iv))
        lags = ((0,) if first else ()) if at[T] == 1 else lag
        for back in lags:
            where = dict(at)
            if T in pu:
                where[T] = at[T] - back
            elif back:
                continue
            free = [p for p in pu if p not in where]
            for extra in itertools.product(*(range(1, G.graph["plates"][p]["size"] + 1) for p in free)):
                where.update(zip(free, extra))
                yield copy_name(u, tuple(where[p] for p in pu)), copy_name(v, iv)


def site_copies(G: nx.DiGraph, name: str, copies: Callable[[str], list],
                copy_name: Callable[[str, tuple], str]) -> set[str] | None:
    """A program's site name (``x_3``) of a folded node: its step's copies in the unrolled graph (one per
    index of the node's other plates); ``None`` when `name` is not a folded site."""
    found = G.graph.get("folded", {}).get(name.strip())
    if found is None:
        return None
    node, step = found
    plates = G.nodes[node].get("plates", ())
    T = time_plate(G, node)
    return {copy_name(node, idx) for idx in copies(node) if dict(zip(plates, idx))[T] == step}
