"""A chain on a time plate drawn the textbook way: its steps unrolled from left to right.

Bishop's HMM figure draws ``z_1 -> z_2 -> ... -> z_T`` with each observation ``x_t`` below its ``z_t``;
a box "t = 1..T" around one ``x_t`` with an arrow to itself is no figure a student has seen. So a time plate
whose steps depend on earlier ones (``markov`` in `plates.markov`) is drawn as its first steps, an
ellipsis and its last step, ``x_1 -> x_2 -> x_3 -> ... -> x_T`` (every step when there are at most five),
with the note ``t = 1..T (T = 10)`` at the end of the first row. The other plates stay boxes, and a
node's other plates keep their indices (``x_{i,1}`` in a box ``i = 1..N``). Each variable's distribution
is written once, at the end of its row: ``x_1 ~ Categorical(pi)`` and ``x_t ~ Categorical(A[x_{t-1}])``
when the first step differs, else ``y_t ~ Normal(mu[x_t], 1)``.

`drawing_graph` makes that picture as an ordinary plate graph for the DOT and TikZ writers: one node per
drawn step (named ``x[1]``, ``x[2]``, ``x[T]``; the ellipsis ``x[...]``) on a one-step plate of its own
(``slice_of`` the time plate: it indexes the node and draws no box); nodes of kind ``text`` (``html`` and
``latex`` say what they show, ``text_class`` is ``ellipsis``, ``plate`` or ``distribution``) for the
ellipsis, the note and the distributions; and in ``graph["dot_extra"]`` the DOT statements that keep each
variable's steps in one row below the parameters they depend on.
"""

from __future__ import annotations

import networkx as nx

from .dot import _q
from .markov import is_split
from .labels import distribution_text
from .symbols import html_label, latex, plain

SHOWN_FIRST = 3  # steps drawn before the ellipsis of a long chain
ELLIPSIS = "..."


def shown_steps(size: int) -> list[int | None]:
    """The steps drawn for a chain of `size` steps, ``None`` for the ellipsis: all of them up to five,
    else ``[1, 2, 3, None, size]``."""
    if size <= SHOWN_FIRST + 2:
        return list(range(1, size + 1))
    return list(range(1, SHOWN_FIRST + 1)) + [None, size]


def _chain_plate(G: nx.DiGraph, n: str) -> str | None:
    for p in G.nodes[n].get("plates", ()):
        if G.graph["plates"][p].get("markov"):
            return p
    return None


def _is_chain_variable(G: nx.DiGraph, n: str) -> bool:
    """A variable that a later step depends on (its own or another's): drawn with an ellipsis."""
    return any(any(data.get("lag", ())) for _, _, data in G.out_edges(n, data=True))


def _step_label(plate: str, size: int, step: int) -> str:
    """The index drawn for `step`: its number, or the plate's name for the last step after an ellipsis."""
    return plate if step == size and None in shown_steps(size) else str(step)


def _off(plates, plate: str) -> tuple[str, ...]:
    return tuple(p for p in plates if p != plate)


def drawing_graph(G: nx.DiGraph, distributions: bool = True) -> nx.DiGraph:
    """`G` with every chain's time plate unrolled for drawing (see the module docstring); `G` itself when
    it has no chain. `distributions` false leaves the distribution text out (as ``distributions=False``)."""
    chains = [p for p, info in G.graph["plates"].items() if info.get("markov")]
    if not chains:
        return G
    D = nx.DiGraph()
    D.graph.update(G.graph)
    D.graph["plates"] = {p: info for p, info in G.graph["plates"].items() if p not in chains}
    # Graphviz's second crossing minimisation over clusters may reverse a row inside a plate (x_3 x_2 x_1)
    D.graph["dot_extra"] = ["graph [remincross=false];"]
    drawn: dict[str, dict[int | None, str]] = {}
    for n, data in G.nodes(data=True):
        plate = _chain_plate(G, n)
        if plate is None:
            D.add_node(n, **data)
        else:
            drawn[n] = _add_steps(G, D, n, plate)
    for u, v, data in G.edges(data=True):
        _add_drawn_edges(D, drawn, u, v, data)
    for plate in chains:
        _add_rows(G, D, drawn, plate, distributions)
    return D


def _add_steps(G: nx.DiGraph, D: nx.DiGraph, n: str, plate: str) -> dict[int | None, str]:
    """Node `n`'s drawn steps (and its ellipsis) added to `D`, without distribution text: step -> node."""
    d = G.nodes[n]
    size = G.graph["plates"][plate]["size"]
    out: dict[int | None, str] = {}
    for k, step in enumerate(shown_steps(size)):
        order = d.get("order", 0) + k / 100
        if step is None:
            if _is_chain_variable(G, n):
                out[None] = f"{n}[{ELLIPSIS}]"
                D.add_node(out[None], kind="text", text_class="ellipsis", label=ELLIPSIS, html="⋯",
                           latex=r"$\cdots$", order=order, plates=_off(d.get("plates", ()), plate),
                           tooltip=f"{n}: steps {SHOWN_FIRST + 1} to {size - 1}")
            continue
        label = _step_label(plate, size, step)
        one = f"{plate}={label}"
        D.graph["plates"][one] = {"size": 1, "index": label, "dim": None, "slice_of": plate}
        out[step] = f"{n}[{label}]"
        text = d.get("first_distribution") if step == 1 and is_split(G, n) else d.get("distribution")
        D.add_node(out[step], **dict(d, order=order, plates=tuple(one if p == plate else p for p in d["plates"]),
                                     dist_name=None, dist_args=[], enumerated=False, distribution=text, step_of=n))
    return out


def _add_drawn_edges(D: nx.DiGraph, drawn: dict, u: str, v: str, data: dict) -> None:
    """Edge (u, v) between the drawn steps: step s of v from step s - lag of u, from u's ellipsis when the
    figure leaves that step out; into v's ellipsis see `_add_ellipsis_edges`."""
    if v not in drawn:
        for src in (drawn[u].values() if u in drawn else [u]):
            D.add_edge(src, v)
        return
    for step, target in drawn[v].items():
        if step is None:
            _add_ellipsis_edges(D, drawn, u, v, data)
            continue
        lags = ((0,) if data.get("first", True) else ()) if step == 1 else data.get("lag", (0,))
        for lag in lags:
            if u not in drawn:
                D.add_edge(u, target)
            elif step - lag in drawn[u]:
                D.add_edge(drawn[u][step - lag], target)
            elif None in drawn[u]:
                D.add_edge(drawn[u][None], target)


def _add_ellipsis_edges(D: nx.DiGraph, drawn: dict, u: str, v: str, data: dict) -> None:
    """Into v's ellipsis: from u's last step before it (a lagged parent) and from u's ellipsis (a parent
    at the same step); parents off the time plate are not repeated there."""
    if u not in drawn:
        return
    lags = data.get("lag", (0,))
    if any(lags):
        D.add_edge(drawn[u][SHOWN_FIRST], drawn[v][None])
    if None in drawn[u] and u != v and 0 in lags:
        D.add_edge(drawn[u][None], drawn[v][None])


def _row(drawn_steps: dict) -> list[str]:
    """A variable's drawn nodes from left to right, the ellipsis before the last step."""
    ordered = [drawn_steps[s] for s in sorted(s for s in drawn_steps if s is not None)]
    if None in drawn_steps:
        ordered.insert(SHOWN_FIRST, drawn_steps[None])
    return ordered


def _add_rows(G: nx.DiGraph, D: nx.DiGraph, drawn: dict, plate: str, distributions: bool) -> None:
    """Each variable of `plate` in one row ending in its distribution, the note ``t = 1..T (T = 10)``
    after the first row, and the parameters of the rows above them."""
    rows = [n for n in sorted(drawn, key=lambda n: G.nodes[n].get("order", 0)) if _chain_plate(G, n) == plate]
    if not rows:
        return
    note = _add_plate_note(G, D, plate, rows[0])
    for n in rows:
        members = _row(drawn[n]) + ([note] if n == rows[0] else [])
        legend = _add_legend(G, D, n, plate, distributions)
        if legend:
            members.append(legend)
        for left, right in zip(members, members[1:]):
            if not D.has_edge(left, right):
                D.graph["dot_extra"].append(f"{_q(left)} -> {_q(right)} [style=invis];")
        D.graph["dot_extra"].append("{rank=same; " + " ".join(f"{_q(m)};" for m in members) + "}")
    _stack_rows(G, D, drawn, rows)
    _place_parents(G, D, drawn, rows)


def _stack_rows(G: nx.DiGraph, D: nx.DiGraph, drawn: dict, rows: list[str]) -> None:
    """Each row below the one before it (two independent chains, a factorial HMM's, are not drawn side
    by side), unless the lower one feeds the upper one."""
    for upper, lower in zip(rows, rows[1:]):
        if not G.has_edge(lower, upper):
            D.graph["dot_extra"].append(f"{_q(_row(drawn[upper])[0])} -> {_q(_row(drawn[lower])[0])} [style=invis];")


def _place_parents(G: nx.DiGraph, D: nx.DiGraph, drawn: dict, rows: list[str]) -> None:
    """The rows' parameters above the first row, except those of only the last row (an HMM's emission
    parameters): they go below it, so that their arrows do not cross the chain."""
    first, last = _row(drawn[rows[0]])[0], _row(drawn[rows[-1]])[0]
    outside = lambda n: [u for u in G.predecessors(n) if u not in drawn]  # noqa: E731
    below = {u for u in outside(rows[-1]) if len(rows) > 1 and set(G.successors(u)) == {rows[-1]}}
    for u in sorted({u for n in rows for u in outside(n)} - below):
        D.graph["dot_extra"].append(f"{_q(u)} -> {_q(first)} [style=invis];")
    for u in sorted(below):
        D.graph["dot_extra"].append(f"{_q(last)} -> {_q(u)} [style=invis];")
        for v in D.successors(u):  # arrows up: they must not pull it above the rows
            D.edges[u, v]["dot_attrs"] = "constraint=false"


def _add_plate_note(G: nx.DiGraph, D: nx.DiGraph, plate: str, first_row: str) -> str:
    info = G.graph["plates"][plate]
    i, size = info["index"], info["size"]
    note = f"{plate}:steps"
    D.add_node(note, kind="text", text_class="plate", label=f"{i} = 1..{plate} ({plate} = {size})",
               html=f"{html_label(i)} = 1..{html_label(plate)} ({html_label(plate)} = {size})",
               latex=rf"${latex(i)} = 1, \dots, {latex(plate)}$ $({latex(plate)} = {size})$",
               order=G.nodes[first_row].get("order", 0) + 0.09, plates=_off(G.nodes[first_row]["plates"], plate),
               tooltip=f"time plate {plate}: {i} = 1..{plate} ({plate} = {size})")
    return note


def _add_legend(G: nx.DiGraph, D: nx.DiGraph, n: str, plate: str, distributions: bool) -> str | None:
    """The text at the end of `n`'s row: ``x_1 ~ ...`` and ``x_t ~ ...`` (or one line for every step),
    and the marks the circles would carry (discrete, enumerated; deterministic)."""
    d = G.nodes[n]
    steps = [("1", True), ("t", False)] if is_split(G, n) else [("t", False)]
    html_lines, latex_lines, plain_lines = [], [], []
    if distributions:
        for step, first in steps:
            text = distribution_text(G, n, "html", first=first)
            if text:
                html_lines.append(f"{html_label(d['label'], (step,))} ~ {text}")
                tex = distribution_text(G, n, "latex", first=first)
                latex_lines.append(f"${latex(d['label'], (step,))} \\sim {tex}$")
                plain_lines.append(f"{plain(d['label'], (step,))} ~ {distribution_text(G, n, 'plain', first=first)}")
    for flag, words in (("enumerated", "discrete, enumerated" if d["kind"] == "latent" else "discrete"),
                        ("deterministic", "deterministic")):
        if d.get(flag) or (flag == "deterministic" and d["kind"] == "deterministic"):
            html_lines.append(f"<I>{words}</I>")
            latex_lines.append(rf"\textit{{{words}}}")
            plain_lines.append(words)
    if not html_lines:
        return None
    legend = f"{n}:dist"
    D.add_node(legend, kind="text", text_class="distribution", label="; ".join(plain_lines),
               html='<BR ALIGN="LEFT"/>'.join(html_lines) + '<BR ALIGN="LEFT"/>', latex=" \\\\ ".join(latex_lines),
               order=d.get("order", 0) + 0.095, plates=_off(d["plates"], plate), tooltip="; ".join(plain_lines))
    return legend
