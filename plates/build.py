"""`graph(model, data, **options)`: a model (name, spec or callable) -> a `PlateGraph`.

Node kinds follow the course's drawing conventions:

========================  =====================================================================
latent                    a sample site without ``obs=`` (hollow circle); discrete ones with finite
                          support are marked ``enumerated`` (the engines sum them out)
observed                  a sample site with ``obs=``, or a covariate: a data argument that enters a
                          distribution without being observed itself (filled circle)
deterministic             a ``pyro.deterministic`` site (dashed circle)
parameter                 a ``pyro.param``, or one node per ``pyro.module``/``PyroModule`` (bare symbol)
hyperparameter            a float model option that sets a distribution argument (small solid dot)
========================  =====================================================================
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import networkx as nx
import torch

from ppl_models.data import plain_data
from ppl_models.errors import one_line
from ppl_models.registry import resolve

from .errors import PlateError
from .extract import DATA, HYPER, Extraction, extract, param_group
from .markov import fold_chains
from .labels import distribution_text
from .plategraph import PlateGraph
from .symbols import canonical, default_indices, index_letter, number

_OPTIONS = ("guide", "labels", "plate_index", "seed", "distributions")


def _plain_kwargs(fn: Callable, data: Mapping[str, Any]) -> dict:
    """Data for an unregistered callable (`ppl_models.data.plain_data`), with the float defaults of its
    signature added so that a hyperparameter left at its default still shows up by name."""
    out = plain_data(fn, data)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if isinstance(p.default, float) and not isinstance(p.default, bool) and name not in out:
            out[name] = p.default
    return out


def graph(model: Any, data: Mapping[str, Any] | None = None, **options: Any) -> PlateGraph:
    """Trace `model` once on `data` and build its plate graph.

    Args:
        model: a registered name, a `ModelSpec`, or a Pyro callable (called as ``model(**data)``).
        data: data and options; ``None`` uses a spec's default data (a callable then runs on no arguments).
        guide: an amortized guide to overlay as dashed inference arrows: a callable with the model's
            signature, ``None`` (default: the spec's guide if it has one) or ``False`` (none).
        labels: ``{site: label}``, e.g. ``{"locs": "mu"}``; wins over the spec's ``display["labels"]``.
        plate_index: ``{plate: index letter}``, e.g. ``{"N": "j"}``; wins over ``display["plate_index"]``.
        seed: RNG seed of the one traced run (the structure does not depend on it).
        distributions: write ``theta ~ Beta(alpha, beta)`` under each node (default True).

    Raises:
        KeyError: unknown model name (the message lists the known ones).
        ppl_models.DataError: data that do not fit a registered model, or `model` is not a model.
        PlateError: an unknown option, or a model that cannot run on the data.
    """
    for key in options:
        if key not in _OPTIONS:
            raise PlateError(key, f"is not an option of plates.graph; options are {', '.join(_OPTIONS)}")
    spec, fn, name = resolve(model)  # not a model at all: a DataError (an InputError)
    seed = int(options.get("seed", 0))
    if spec is not None:
        kwargs = spec.validate(spec.default_data(seed=seed) if data is None else data)
        fields = {f.name for f in spec.fields}
        display = dict(spec.display or {})
        guide = spec.guide if options.get("guide") is None else options["guide"]
    else:
        kwargs = _plain_kwargs(fn, data or {})
        fields = None
        display = {}
        guide = options.get("guide")
    if guide is not None and guide is not False and not callable(guide):
        raise PlateError("guide", f"must be a callable, None or False, got {type(guide).__name__}")
    labels = {**dict(display.get("labels", {})), **dict(options.get("labels") or {})}
    plate_index = {**dict(display.get("plate_index", {})), **dict(options.get("plate_index") or {})}

    try:
        x = extract(fn, kwargs, fields, seed)
    except PlateError:
        raise
    except Exception as exc:
        raise PlateError("data", f"the model cannot run on this data: {one_line(exc)}") from exc
    if not x.sites:
        raise PlateError("model", "has no sample sites to draw")
    names = [*x.sites, *x.params, *x.data_values, *x.hyper_values]
    one_letter = {label for label in (_label(n, labels) for n in names) if len(label) == 1}
    plate_index = {**default_indices(list(x.plates), plate_index, one_letter), **plate_index}
    G = _model_graph(x, spec, kwargs, labels, plate_index)
    G = fold_chains(G, {n for n, site in x.sites.items() if site.markov}, lambda n: _label(n, labels),
                    lambda p: index_letter(p, plate_index))
    Q = None
    if guide:
        try:
            gx = extract(guide, kwargs, fields, seed)
        except Exception as exc:
            raise PlateError("guide", f"the guide cannot run on this data: {one_line(exc)}") from exc
        Q = _guide_graph(gx, x, G, labels)
    return PlateGraph(G, Q, name=name, show_distributions=bool(options.get("distributions", True)))


def _label(node: str, labels: Mapping[str, str]) -> str:
    return canonical(labels.get(node, node))


def _source_node(tag: str, x: Extraction) -> tuple[str, str] | None:
    """(node, kind) a raw provenance tag stands for.

    Observed data used other than through its sample site (a mask or a shape taken from ``x``) is not a
    dependency on the random variable: as in Pyro, dependencies flow through the values sites return.
    """
    if tag.startswith(HYPER):
        return tag[len(HYPER):], "hyperparameter"
    if tag.startswith(DATA):
        key = tag[len(DATA):]
        return None if key in x.aliases else (key, "covariate")
    if tag in x.sites:
        return tag, "site"
    if tag in x.params:
        return param_group(tag), "parameter"
    return None


def _model_graph(x: Extraction, spec: Any, kwargs: dict, labels: dict, plate_index: dict) -> nx.DiGraph:
    G = nx.DiGraph()
    G.graph["plates"] = {
        p: {"size": info["size"], "index": index_letter(p, plate_index), "dim": info["dim"]}
        for p, info in x.plates.items()
    }
    for order, (name, site) in enumerate(x.sites.items()):
        G.add_node(name, kind=site.kind, distribution=None, dist_name=site.dist, plates=site.plates,
                   label=_label(name, labels), discrete=site.discrete, enumerated=site.enumerated,
                   role=None, order=order, value=None)
    extra: dict[str, dict] = {}
    consumers: dict[str, list[str]] = {}
    for name, site in x.sites.items():
        for tag in sorted(site.sources):
            found = _source_node(tag, x)
            if found is None or found[0] == name:
                continue
            node, kind = found
            if kind != "site":
                extra.setdefault(node, {"kind": kind})
                consumers.setdefault(node, []).append(name)
            G.add_edge(node, name)
    order = len(G)
    for node, info in extra.items():
        attrs = dict(distribution=None, dist_name=None, label=_label(node, labels), discrete=False,
                     enumerated=False, role=None, order=order, value=None, plates=())
        order += 1
        if info["kind"] == "hyperparameter":
            attrs.update(kind="hyperparameter", value=x.hyper_values.get(node, kwargs.get(node)))
        elif info["kind"] == "covariate":
            attrs.update(kind="observed", role="covariate",
                         plates=_covariate_plates(node, x, spec, consumers[node], G))
        else:
            attrs.update(kind="parameter")
        G.add_node(node, **attrs)
    for name, site in x.sites.items():
        G.nodes[name]["dist_args"] = _describe_args(site, x, G)
    for name in x.sites:  # the plain-text form is an attribute of the node
        G.nodes[name]["distribution"] = distribution_text(G, name, "plain")
    return G


def _covariate_plates(key: str, x: Extraction, spec: Any, consumers: list[str], G: nx.DiGraph) -> tuple[str, ...]:
    """The plates of a covariate: its declared dims that are plates, or the consumers' plates whose size
    matches one of its axes."""
    value = x.data_values.get(key)
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    common = None
    for c in consumers:
        ps = [p for p in G.nodes[c]["plates"]]
        common = ps if common is None else [p for p in common if p in ps]
    common = common or []
    if spec is not None:
        for f in spec.fields:
            if f.name == key:
                dims = [d for d in f.dims if len(d) == len(shape)]
                if dims:
                    return tuple(p for p in common if p in dims[0])
    return tuple(p for p in common if x.plates[p]["size"] in shape)


def _describe_args(site, x: Extraction, G: nx.DiGraph) -> list[tuple]:
    """Each distribution argument as a format-free description (see `plategraph.distribution_text`)."""
    out = []
    for arg in site.args:
        if not arg.sources:
            out.append((arg.name, "const", _constant_text(arg.constant)))
            continue
        nodes = []
        for tag in sorted(arg.sources, key=lambda t: _order(t, x, G)):
            found = _source_node(tag, x)
            if found and found[0] not in nodes and found[0] != site.name:
                nodes.append(found[0])
        if not nodes:
            out.append((arg.name, "const", "?"))
            continue
        modules = [n for n in nodes if G.nodes[n]["kind"] == "parameter" and n not in x.params]
        discrete = [n for n in nodes if G.nodes[n].get("discrete")]
        if len(nodes) == 1:  # the node itself (``mu``), or computed from it (``2 * mu``): f(mu)
            out.append((arg.name, "symbol", nodes[0]) if arg.verbatim else (arg.name, "f", (nodes[0],)))
        elif len(modules) == 1:
            out.append((arg.name, "call", modules[0], tuple(n for n in nodes if n != modules[0])))
        elif discrete and len(nodes) - len(discrete) == 1:
            (cont,) = [n for n in nodes if n not in discrete]
            out.append((arg.name, "sub", cont, _in_index_order(cont, discrete, x)))
        else:
            out.append((arg.name, "f", tuple(nodes)))
    return out


def _in_index_order(table: str, indices: list[str], x: Extraction) -> tuple[str, ...]:
    """The discrete sites that pick an entry of `table` in the order they index it: ``p[x, y]`` and
    ``Vindex(p)[..., x, y, :]`` read p_xy, and ``p[x][y]`` too (a later indexing comes after), whichever
    of x and y the program drew first. Sites no recorded indexing places keep program order, after."""
    place = {}
    for run, (base, positions) in enumerate(x.indexings):
        if not any(_source_node(t, x) == (table, kind) for t in base for kind in ("site", "parameter")):
            continue
        for position, tags in enumerate(positions):
            for node in indices:
                if node in tags:
                    place.setdefault(node, (run, position))
    return tuple(sorted(indices, key=lambda n: place.get(n, (len(x.indexings), 0))))


def _order(tag: str, x: Extraction, G: nx.DiGraph) -> tuple:
    found = _source_node(tag, x)
    if found and found[0] in G:
        return (G.nodes[found[0]].get("order", 0), tag)
    return (10**9, tag)


def _constant_text(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return "[]"
        flat = value.reshape(-1)
        if bool((flat == flat[0]).all()):
            return number(flat[0])
        if value.dim() == 1 and value.numel() <= 4:
            return "[" + ", ".join(number(v) for v in value.tolist()) + "]"
        return "const"
    return number(value)


def _guide_graph(gx: Extraction, x: Extraction, G: nx.DiGraph, labels: dict) -> nx.DiGraph:
    """The inference arrows: for each guide site that is a model latent, its sources in the guide.

    A guide reads the data as arguments, so ``d:x`` stands for the model's observed site fed by ``x``;
    guide parameters (the encoder) become guide-only parameter nodes.
    """
    Q = nx.DiGraph()
    for name, site in gx.sites.items():
        if name not in G or G.nodes[name]["kind"] != "latent":
            continue
        Q.add_node(name)
        for tag in sorted(site.sources):
            if tag.startswith(HYPER):
                continue
            if tag.startswith(DATA):
                key = tag[len(DATA):]
                node = x.aliases.get(key, key)
                if node not in G:
                    continue
            elif tag in gx.params:
                node = param_group(tag)
                if node not in G:
                    Q.add_node(node, kind="parameter", label=_label(node, labels), plates=())
            elif tag in gx.sites and tag in G:
                node = tag
            else:
                continue
            if node != name:
                Q.add_edge(node, name)
    return Q
