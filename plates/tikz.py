"""The graph view as a standalone LaTeX/TikZ picture for lecture notes.

Graphviz ``dot`` places the nodes (``dot -Tplain``); this module writes TikZ with the course's styles
(``latent``, ``obs``, ``det``, ``const`` for hyperparameters, ``param`` for learned parameters) and draws
each plate as the box around its members, labelled ``$i = 1, \\dots, N$ $(N = 10)$`` at its bottom right.
Only the ``tikz`` package and its ``arrows.meta`` library are needed.
"""

from __future__ import annotations

import re

from .dot import DIST_SUFFIX, _value_text
from .labels import distribution_text, node_indices, plate_path, plate_rank, symbol
from .render import run_dot
from .symbols import latex

_NODE = re.compile(r'^node ("(?:[^"\\]|\\.)*"|\S+) (\S+) (\S+) (\S+) (\S+)')

PREAMBLE = r"""\documentclass[tikz,border=6pt]{standalone}
\usetikzlibrary{arrows.meta}
\begin{document}
\begin{tikzpicture}[x=1in, y=1in, >={Stealth[length=2mm]},
  latent/.style={circle, draw, minimum size=8mm, inner sep=1pt},
  obs/.style={latent, fill=black!25},
  det/.style={latent, dashed},
  const/.style={circle, fill=black, inner sep=0pt, minimum size=1.6mm},
  param/.style={inner sep=1pt},
  dist/.style={font=\scriptsize, text=black!75, inner sep=1pt},
  plate/.style={draw, thin},
  infer/.style={->, dashed, red!70!black}]
"""


def _layout(pg) -> dict[str, tuple[float, float, float, float]]:
    """Node name -> (x, y, width, height) in inches, from ``dot -Tplain``."""
    out = {}
    for line in run_dot(pg.to_dot(), "plain").decode().splitlines():
        m = _NODE.match(line)
        if m:
            name = m.group(1)
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            out[name] = tuple(float(m.group(i)) for i in range(2, 6))
    return out


def to_tikz(pg) -> str:
    G = pg.networkx
    pos = _layout(pg)
    ids = {n: f"n{i}" for i, n in enumerate(list(G) + [n for n in (pg.guide or ()) if n not in G])}
    lines = [PREAMBLE]
    for n in sorted(G, key=lambda n: G.nodes[n].get("order", 0)):
        d = G.nodes[n]
        x, y, w, h = pos[n]
        kind = d["kind"]
        if kind == "text":  # a drawn chain's ellipsis, time range or distributions (plates.timeslices)
            style = "dist, align=left" if d.get("text_class") == "distribution" else "param"
            lines.append(f"\\node[{style}] ({ids[n]}) at ({x:.3f},{y:.3f}) {{{d['latex']}}};")
            continue
        sym = symbol(G, n, "latex", node_indices(G, n))
        if kind == "hyperparameter":
            value = _value_text(d.get("value"))
            lab = f"${symbol(G, n, 'latex')}{' = ' + value if value is not None else ''}$"
            lines.append(f"\\node[const, label={{left:{lab}}}] ({ids[n]}) at ({x:.3f},{y:.3f}) {{}};")
            continue
        style = {"observed": "obs", "deterministic": "det", "parameter": "param"}.get(kind, "latent")
        lines.append(f"\\node[{style}] ({ids[n]}) at ({x:.3f},{y:.3f}) {{${sym}$}};")
        notes = []
        if pg.show_distributions and d.get("dist_name"):
            notes.append(f"${symbol(G, n, 'latex')} \\sim {distribution_text(G, n, 'latex')}$")
        if d.get("enumerated"):
            notes.append(r"\textit{discrete, enumerated}")
        if notes:
            text = " \\\\ ".join(notes)
            if n + DIST_SUFFIX in pos:  # where dot put the text node
                tx, ty, _, _ = pos[n + DIST_SUFFIX]
                lines.append(f"\\node[dist, align=center] at ({tx:.3f},{ty:.3f}) {{{text}}};")
            else:
                lines.append(f"\\node[dist, anchor=north, align=center] at ({ids[n]}.south) {{{text}}};")
    for n in (pg.guide or ()):
        if n not in G and n in pos:
            x, y, _, _ = pos[n]
            lab = latex(pg.guide.nodes[n].get("label", n))
            lines.append(f"\\node[param, text=red!70!black] ({ids[n]}) at ({x:.3f},{y:.3f}) {{${lab}$}};")
    lines.extend(_plates(pg, pos))
    for u, v in G.edges:
        lines.append(f"\\draw[->] ({ids[u]}) -- ({ids[v]});")
    for u, v in (pg.guide.edges if pg.guide is not None else ()):
        lines.append(f"\\draw[infer] ({ids[u]}) to[bend left=25] ({ids[v]});")
    lines.append("\\end{tikzpicture}\n\\end{document}\n")
    return "\n".join(lines)


def _plates(pg, pos) -> list[str]:
    G = pg.networkx
    rank = plate_rank(G)
    paths = {n: plate_path(G, n, rank) for n in G}
    prefixes = sorted({p[:k] for p in paths.values() for k in range(1, len(p) + 1)}, key=len, reverse=True)
    boxes: dict[tuple[str, ...], tuple[float, float, float, float]] = {}
    pad, label_room = 0.1, 0.28  # inches; the bottom leaves room for the plate's label
    for prefix in prefixes:  # innermost first, so an outer box encloses the inner ones
        xs0, ys0, xs1, ys1 = [], [], [], []
        for n, p in paths.items():
            if p == prefix:
                for member in (n, n + DIST_SUFFIX):  # the node and its distribution text
                    if member in pos:
                        x, y, w, h = pos[member]
                        xs0.append(x - w / 2), ys0.append(y - h / 2), xs1.append(x + w / 2), ys1.append(y + h / 2)
        for inner, (a, b, c, e) in boxes.items():
            if len(inner) == len(prefix) + 1 and inner[: len(prefix)] == prefix:
                xs0.append(a), ys0.append(b), xs1.append(c), ys1.append(e)
        boxes[prefix] = (min(xs0) - pad, min(ys0) - label_room, max(xs1) + pad, max(ys1) + pad)
    out = []
    for prefix, (a, b, c, e) in sorted(boxes.items(), key=lambda kv: len(kv[0])):
        plate = prefix[-1]
        info = G.graph["plates"][plate]
        i, n = latex(info["index"]), latex(plate)
        out.append(f"\\draw[plate] ({a:.3f},{b:.3f}) rectangle ({c:.3f},{e:.3f});")
        out.append(f"\\node[anchor=south east, font=\\small] at ({c:.3f},{b:.3f}) "
                   f"{{${i} = 1, \\dots, {n}$ $({n} = {info['size']})$}};")
    return out
