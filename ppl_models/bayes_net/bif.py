"""Read and write networks in BIF, the Bayesian Interchange Format of the bnlearn repository and pgmpy.

    network asia { }
    variable smoke { type discrete [ 2 ] { yes, no }; }
    probability ( lung | smoke ) {
      (yes) 0.1, 0.9;
      (no) 0.01, 0.99;
    }
    probability ( smoke ) { table 0.5, 0.5; }

A ``(parent states) probabilities;`` line is one CPT row. A ``table`` lists the whole CPT as pgmpy reads
it: the child's state varies slowest, the parents' configuration (last parent fastest) fastest; a
``default`` row fills every configuration not listed. Comments (``//`` and ``/* */``) and ``property``
lines are ignored. Problems become a `DataError` naming the variable.

Example:
    >>> from ppl_models.bayes_net.bif import read_bif
    >>> net = read_bif('''variable a { type discrete [ 2 ] { t, f }; }
    ... probability ( a ) { table 0.3, 0.7; }''')
    >>> net.cpts["a"].tolist()
    [0.3, 0.7]
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from ..data import DataError
from .network import BayesNet

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_HEADER = re.compile(r"\b(network|variable|probability)\b\s*([^{]*)\{")
_TYPE = re.compile(r"type\s+discrete\s*\[\s*(\d+)\s*\]\s*\{(.*?)\}\s*;", re.DOTALL)


def _blocks(text: str):
    """(keyword, header, body) for each top-level block; bodies may hold one level of nested braces."""
    pos = 0
    while True:
        match = _HEADER.search(text, pos)
        if not match:
            return
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:
            raise DataError("bif", f"unbalanced braces in the {match.group(1)} block {match.group(2).strip()!r}")
        yield match.group(1), match.group(2).strip(), text[match.end():i - 1]
        pos = i


def _split_states(raw: str) -> list[str]:
    parts = raw.split(",") if "," in raw else raw.split()
    return [p.strip() for p in parts if p.strip()]


def _numbers(raw: str, where: str) -> list[float]:
    try:
        values = [float(x) for x in re.split(r"[\s,]+", raw.strip()) if x]
    except ValueError:
        raise DataError(where, f"CPT entry is not a number in {raw.strip()!r}") from None
    bad = [v for v in values if not np.isfinite(v)]
    if bad:  # 'nan' and 'inf' parse as floats; a probability must be a finite number
        raise DataError(where, f"CPT entry {bad[0]:g} is not a finite number in {raw.strip()[:60]!r}")
    return values


def parse_bif(text: str, name: str | None = None) -> BayesNet:
    """A `BayesNet` from BIF text."""
    text = _COMMENTS.sub("", text)
    states: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    bodies: dict[str, str] = {}
    network_name = name
    for keyword, header, body in _blocks(text):
        if keyword == "network":
            network_name = network_name or header or None
        elif keyword == "variable":
            if not header:
                raise DataError("bif", "a variable block has no name ('variable NAME { ... }')")
            match = _TYPE.search(body)
            if not match:
                raise DataError(header, "variable block has no 'type discrete [ n ] { states };' line")
            values = _split_states(match.group(2))
            if not values:
                raise DataError(header, "declares no states; a variable needs at least one")
            if len(values) != int(match.group(1)):
                raise DataError(header, f"declares {match.group(1)} states but lists {len(values)}: "
                                f"{', '.join(values)}")
            if header in states:
                raise DataError(header, "is declared twice")
            states[header] = values
        else:
            head = header.strip()
            if not (head.startswith("(") and head.endswith(")")):
                raise DataError("bif", f"malformed probability header {header!r}")
            head = head[1:-1]
            if not head.replace("|", "").replace(",", "").strip():
                raise DataError("bif", f"probability block {header!r} names no variable")
            if "|" in head:
                child, rest = head.split("|", 1)
                child, ps = child.strip(), [p.strip() for p in rest.split(",") if p.strip()]
                if not child:
                    raise DataError("bif", f"probability block {header!r} names no variable before '|'")
            else:
                words = head.replace(",", " ").split()
                child, ps = words[0], words[1:]
            if child in parents:
                raise DataError(child, "has two probability blocks")
            parents[child] = ps
            bodies[child] = body
    for var in parents:
        if var not in states:
            raise DataError(var, "has a probability block but no variable declaration")
        for p in parents[var]:
            if p not in states:
                raise DataError(var, f"parent {p!r} is not a declared variable")
    if not states:
        raise DataError("bif", "no variable declarations found ('variable NAME { type discrete [ n ] { ... }; }'): "
                        "the network is empty or not BIF")
    missing = [v for v in states if v not in parents]
    if missing:
        raise DataError(missing[0], "has no probability block (no CPT)")
    cpts = {var: _cpt(var, parents[var], states, bodies[var]) for var in states}
    return BayesNet(states, parents, cpts, name=network_name or "network")


def _cpt(var: str, ps: list[str], states: dict[str, list[str]], body: str) -> np.ndarray:
    card = len(states[var])
    parent_cards = [len(states[p]) for p in ps]
    table = np.full(parent_cards + [card], np.nan)
    index = {p: {s: i for i, s in enumerate(states[p])} for p in ps}
    for statement in body.split(";"):
        statement = statement.strip()
        if not statement or statement.startswith("property"):
            continue
        if statement.startswith("table"):
            values = np.asarray(_numbers(statement[len("table"):], var))
            if values.size != table.size:
                raise DataError(var, f"table has {values.size} entries, expected {table.size}")
            table[...] = np.moveaxis(values.reshape([card] + parent_cards), 0, -1)
        elif statement.startswith("default"):
            values = _numbers(statement[len("default"):], var)
            if len(values) != card:
                raise DataError(var, f"default row has {len(values)} entries, expected {card}")
            unset = np.isnan(table[..., 0])
            table[unset] = values
        elif statement.startswith("("):
            close = statement.find(")")
            if close < 0:
                raise DataError(var, f"malformed CPT row {statement!r}")
            config = _split_states(statement[1:close])
            if not ps:
                raise DataError(var, f"has no parents: its CPT is one 'table' line, not a row ({', '.join(config)})")
            if len(config) != len(ps):
                raise DataError(var, f"CPT row ({', '.join(config)}) names {len(config)} parent states, "
                                f"expected {len(ps)} ({', '.join(ps)})")
            where = []
            for p, s in zip(ps, config):
                if s not in index[p]:
                    raise DataError(var, f"CPT row names state {s!r} of parent {p!r}, which has states "
                                    f"{', '.join(states[p])}")
                where.append(index[p][s])
            values = _numbers(statement[close + 1:], var)
            if len(values) != card:
                raise DataError(var, f"CPT row ({', '.join(config)}) has {len(values)} entries, expected {card}")
            table[tuple(where)] = values
        else:
            raise DataError(var, f"cannot read the CPT statement {statement[:40]!r}")
    unset = np.isnan(table[..., 0])
    if unset.any():
        config = ", ".join(f"{p}={states[p][i]}" for p, i in zip(ps, np.argwhere(unset)[0]))
        raise DataError(var, f"CPT has no row for {config or 'the variable'}")
    return table


def read_bif(source: str | Path, name: str | None = None) -> BayesNet:
    """A `BayesNet` from a BIF file path (``.bif`` or gzipped ``.bif.gz``) or from BIF text."""
    if isinstance(source, Path) or (isinstance(source, str) and "{" not in source):
        path = Path(source)
        if not path.is_file():
            raise DataError("network", f"no such BIF file: {path}")
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except OSError as exc:  # unreadable, or a corrupt .gz (gzip.BadGzipFile is an OSError)
            raise DataError("network", f"{path}: cannot be read ({exc.strerror or exc})") from None
        except (EOFError, zlib.error):
            raise DataError("network", f"{path}: is a truncated or corrupt gzip file") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        try:
            return parse_bif(text, name or path.name.split(".")[0])
        except DataError as exc:  # say which file: the message names the file, the variable and the problem
            where = "" if exc.field in ("bif", "network") else f"variable {exc.field!r}: "
            raise DataError("network", f"{path}: {where}{exc.problem}") from None
    return parse_bif(source, name)


def to_bif(net: BayesNet) -> str:
    """The network as BIF text (one row per parent configuration), readable by `read_bif` and pgmpy."""
    lines = [f"network {net.name} {{", "}"]
    for v in net.order:
        lines.append(f"variable {v} {{")
        lines.append(f"  type discrete [ {net.cardinality(v)} ] {{ {', '.join(net.states[v])} }};")
        lines.append("}")
    for v in net.order:
        cpt = net.cpts[v].numpy()
        ps = net.parents[v]
        if not ps:
            lines.append(f"probability ( {v} ) {{")
            lines.append("  table " + ", ".join(repr(float(x)) for x in cpt) + ";")
        else:
            lines.append(f"probability ( {v} | {', '.join(ps)} ) {{")
            for where in np.ndindex(*cpt.shape[:-1]):
                config = ", ".join(net.states[p][i] for p, i in zip(ps, where))
                lines.append(f"  ({config}) " + ", ".join(repr(float(x)) for x in cpt[where]) + ";")
        lines.append("}")
    return "\n".join(lines) + "\n"
