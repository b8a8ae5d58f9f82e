"""The graph view as Graphviz DOT, drawn the way the course draws plate diagrams.

- random variable: hollow circle; observed (and covariates): filled grey; deterministic: dashed circle;
- hyperparameter: small solid dot labelled ``alpha = 1``; learned parameter: bare symbol;
- plate: a box labelled ``i = 1..N (N = 10)`` at its bottom right; a plate shared by nodes that do not
  nest is drawn once per nesting (Graphviz clusters cannot overlap), each copy with the same label;
- ``theta ~ Beta(alpha, beta)`` under each site; discrete latents the engines sum out say so;
- a guide's inference arrows dashed and coloured, beside the generative arrows.

One statement per line, so the output is easy to read and to test.
"""

from __future__ import annotations

import html
import re

from .labels import distribution_text, node_indices, plate_path, plate_rank, symbol
from .symbols import html_label, number

MARK = "drawn by ppl-suite"  # render() replaces an existing file only when it carries this
FONT = "DejaVu Serif"
OBSERVED_FILL = "#bfbfbf"
GUIDE_COLOUR = "#c0392b"
DIST_SUFFIX = ":dist"  # the id of a site's distribution text node
DIST_FONTSIZE = 12  # points: 16 px at the figure's own size, 11 px or more where the demo report shrinks it
WRAP = 22  # characters: a longer distribution line breaks after its "(" or between its arguments


_TAG_OR_TEXT = re.compile(r"(<[^>]*>)|([^<]+)")
_TAG = re.compile(r"<[^>]*>")


def keep_spaces(label: str) -> str:
    """An HTML-like label whose spaces survive in SVG: every space outside the tags becomes ``&#160;``.

    Graphviz writes each font run of an HTML label (``<I>i</I> = 1..``) as its own SVG ``<text>`` at its
    own x; SVG's default white-space handling, which browsers apply to inline SVG, drops the spaces at the
    ends of every run (``i= 1..N(N= 20)``). A non-breaking space is kept and has a space's width."""
    return _TAG_OR_TEXT.sub(lambda m: m.group(1) or m.group(2).replace(" ", "&#160;"), label)


def _plain_length(label: str) -> int:
    return len(html.unescape(_TAG.sub("", label)))


def _break_points(line: str) -> list[str]:
    """`line` cut after the opening ``(`` and after each comma between the arguments (parenthesis
    depth 1), tags kept whole: ``x ~ Name(a, f(b, c))`` -> ``x ~ Name(``, ``a,``, `` f(b, c))``."""
    pieces, current, depth, i = [], "", 0, 0
    while i < len(line):
        if line[i] == "<":  # a tag such as <SUB> or <I>
            end = line.index(">", i) + 1
            current, i = current + line[i:end], end
            continue
        ch = line[i]
        current += ch
        depth += (ch == "(") - (ch == ")")
        if (ch == "(" or ch == ",") and depth == 1:
            pieces.append(current)
            current = ""
        i += 1
    return pieces + ([current] if current else [])


def wrap_distribution(line: str, width: int = WRAP) -> str:
    """A distribution line longer than `width` characters broken into lines (``<BR/>``) at its break
    points, so that one long distribution does not widen the whole figure (and shrink its text)."""
    if _plain_length(line) <= width:
        return line
    pieces = _break_points(line)
    opening = next((k for k, p in enumerate(pieces) if p.endswith("(")), None)
    if opening is not None:  # the arguments together under the name when they fit (a little slack)
        head, rest = "".join(pieces[: opening + 1]), "".join(pieces[opening + 1:]).lstrip()
        if _plain_length(head) <= width + 4 and _plain_length(rest) <= width + 4:
            return f"{head}<BR/>{rest}"
    lines, current = [], ""
    for piece in pieces:
        if current and _plain_length(current + piece) > width:
            lines.append(current.rstrip())
            current = piece.lstrip()
        else:
            current += piece
    return "<BR/>".join(lines + [current])


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def plate_label_html(G, plate: str) -> str:
    info = G.graph["plates"][plate]
    i, n = html_label(info["index"]), html_label(plate)
    return keep_spaces(f"{i} = 1..{n} ({n} = {info['size']})")


def plate_label_plain(G, plate: str) -> str:
    info = G.graph["plates"][plate]
    return f"{info['index']} = 1..{plate} ({plate} = {info['size']})"


def _value_text(value) -> str | None:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            if value.numel() == 1:
                return number(value.item())
            return None
        return number(value)
    except (TypeError, ValueError):
        return None


def node_statement(pg, n: str) -> str:
    G = pg.networkx
    d = G.nodes[n]
    kind = d["kind"]
    if kind == "text":  # a drawn chain's ellipsis, time range or distributions (plates.timeslices)
        size = f"fontsize={DIST_FONTSIZE}, " if d.get("text_class") in ("distribution", "plate") else ""
        return (f'{_q(n)} [shape=plaintext, margin=0, width=0, height=0, {size}label=<{keep_spaces(d["html"])}>, '
                f'class={_q(d.get("text_class", "text"))}, tooltip={_q(d.get("tooltip", ""))}];')
    sym = symbol(G, n, "html", node_indices(G, n))
    attrs: dict[str, str] = {}
    if kind == "hyperparameter":
        value = _value_text(d.get("value"))
        text = keep_spaces(f"{sym}{' = ' + value if value is not None else ''}")
        attrs.update(shape="plaintext", margin="0", label=(
            '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            f'<TR><TD>{text}</TD></TR><TR><TD><FONT POINT-SIZE="9">●</FONT></TD></TR></TABLE>>'))
    elif kind == "parameter":
        attrs.update(shape="plaintext", label=f"<{sym}>", margin="0", width="0", height="0")
    else:
        style = []
        if kind == "observed":
            style.append("filled")
            attrs["fillcolor"] = OBSERVED_FILL
        if kind == "deterministic":
            style.append("dashed")
        attrs.update(shape="circle", label=f"<{sym}>", margin="0.02", width="0.5")
        if style:
            attrs["style"] = ",".join(style)
        lines = []
        if pg.show_distributions:
            text = distribution_text(G, n, "html")
            if text:
                lines.append(wrap_distribution(f"{symbol(G, n, 'html')} ~ {text}"))
        if d.get("enumerated"):
            lines.append("<I>discrete, enumerated</I>" if kind == "latent" else "<I>discrete</I>")
        if kind == "deterministic":
            lines.append("<I>deterministic</I>")
        if lines:  # a text node beside the circle (xlabels would collide with the arrows)
            note = keep_spaces("<BR/>".join(lines))
            attrs["tooltip"] = _q(f"{n}: {kind}" + (f" ~ {d['distribution']}" if d.get("distribution") else ""))
            attrs["class"] = _q(kind)
            attrs["group"] = _q(n)  # same group as its text node: dot keeps the two in one column
            head = _attrs(attrs)
            return (f"{_q(n)} [{head}];\n"
                    f"{_q(n + DIST_SUFFIX)} [shape=plaintext, fontsize={DIST_FONTSIZE}, margin=0, height=0.2, group={_q(n)}, "
                    f"label=<{note}>, class=\"distribution\"];\n"
                    f"{_q(n)} -> {_q(n + DIST_SUFFIX)} [style=invis, minlen=1, weight=20];")
    attrs["tooltip"] = _q(f"{n}: {kind}" + (f" ~ {d['distribution']}" if d.get("distribution") else ""))
    attrs["class"] = _q(kind)
    return f"{_q(n)} [{_attrs(attrs)}];"


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}={v if v.startswith(('<', chr(34))) else _q(v)}" for k, v in attrs.items())


def to_dot(pg) -> str:
    G = pg.networkx
    rank = plate_rank(G)
    nodes = sorted(G, key=lambda n: G.nodes[n].get("order", 0))
    guide_only = [n for n in (pg.guide or ()) if n not in G]

    # the cluster tree: one cluster per distinct plate path prefix
    tree: dict[tuple[str, ...], list[str]] = {(): []}
    for n in nodes:
        path = plate_path(G, n, rank)
        for k in range(1, len(path) + 1):
            tree.setdefault(path[:k], [])
        tree[path].append(n)
    tree[()].extend(guide_only)

    lines = [f"digraph {_q(pg.name or 'model')} {{"]
    lines.append(f'  graph [rankdir=TB, newrank=true, forcelabels=true, nodesep=0.35, ranksep=0.12, '
                 f'fontname="{FONT}", fontsize=12, comment="{MARK}"];')
    lines.append(f'  node [fontname="{FONT}", fontsize=14];')
    lines.append("  edge [arrowsize=0.7];")
    cluster_ids: dict[tuple[str, ...], str] = {}

    def emit(path: tuple[str, ...], depth: int) -> None:
        pad = "  " * depth
        if path:
            cid = "cluster_" + "__".join(path)
            cluster_ids[path] = cid
            lines.append(f"{pad}subgraph {_q(cid)} {{")
            lines.append(f'{pad}  graph [label=<{plate_label_html(G, path[-1])}>, labeljust=r, labelloc=b, '
                         f'style=solid, margin=12, tooltip={_q(plate_label_plain(G, path[-1]))}];')
        inner = pad + ("  " if path else "")
        kids = sorted((p for p in tree if len(p) == len(path) + 1 and p[: len(path)] == path),
                      key=lambda p: min((G.nodes[m].get("order", 0) for m in _members(tree, p)), default=0))
        if not path:  # plates first: dot then tends to put the shared parameters beside or above them
            for child in kids:
                emit(child, depth + 1)
        for n in tree[path]:
            if n in G:
                lines.extend(inner + line for line in node_statement(pg, n).split("\n"))
            else:  # a guide parameter (the encoder)
                d = pg.guide.nodes[n]
                lab = html_label(d.get("label", n))
                lines.append(f'{inner}{_q(n)} [shape=plaintext, label=<{lab}>, fontcolor="{GUIDE_COLOUR}", '
                             f'class="guide parameter", tooltip={_q(n + ": guide parameter")}];')
        if path:
            for child in kids:
                emit(child, depth + 1)
        if path:
            lines.append(f"{pad}}}")

    emit((), 1)
    for u, v in sorted(G.edges, key=lambda e: (G.nodes[e[1]].get("order", 0), G.nodes[e[0]].get("order", 0))):
        port = ":s" if G.nodes[u]["kind"] == "hyperparameter" else ""  # leave from the dot
        extra = G.edges[u, v].get("dot_attrs")  # e.g. a drawn chain's parameter below it (plates.timeslices)
        lines.append(f"  {_q(u)}{port} -> {_q(v)}{f' [{extra}]' if extra else ''};")
    if pg.guide is not None:
        for u, v in pg.guide.edges:
            # arrows from the data would fight the generative ones for the layout; the encoder's may lead
            constraint = "true" if u not in G else "false"
            lines.append(f'  {_q(u)} -> {_q(v)} [style=dashed, color="{GUIDE_COLOUR}", constraint={constraint}, '
                         f'class="inference"];')
    lines.extend("  " + statement for statement in G.graph.get("dot_extra", ()))  # a drawn chain's rows
    lines.append("}")
    return "\n".join(lines) + "\n"


def _members(tree, path):
    for p, ns in tree.items():
        if p[: len(path)] == path:
            yield from ns
