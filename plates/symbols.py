"""Symbols: site names and labels written as plain text, Unicode/HTML (for Graphviz) and LaTeX.

A label is kept in one canonical spelling, the way a site is named in a Pyro program: Greek letters are
spelled out (``theta``, ``sigma_y``, ``Sigma``), an underscore starts a subscript. A label map may also
give a Unicode letter (``"μ"``) or a LaTeX command (``"\\mu"``); both are turned back into the spelling.

    >>> plain("theta", ("k",)), latex("sigma_y", ("i",)), unicode("pi")
    ('theta_k', '\\\\sigma_{y,i}', 'π')
"""

from __future__ import annotations

import html
import math
import re

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ", "eta": "η",
    "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π",
    "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ",
    "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_FROM_UNICODE = {v: k for k, v in GREEK.items()}
_LATEX_ONLY = {"lambda": r"\lambda"}  # every Greek name is also its LaTeX command

#: default index letter of a plate named by its size symbol; other plates use their name in lower case
DEFAULT_INDEX = {"N": "i", "K": "k", "D": "d", "M": "m", "T": "t", "L": "l", "J": "j", "C": "c"}


def index_letter(plate: str, overrides: dict | None = None) -> str:
    """The index of plate `plate` (``N -> i``), with `overrides` (spec display or option) winning."""
    if overrides and plate in overrides:
        return str(overrides[plate])
    return DEFAULT_INDEX.get(plate, plate.lower())


def default_indices(plates: list[str], given: dict | None = None, avoid: set[str] = frozenset()) -> dict[str, str]:
    """One index letter per plate a program names with a word (``sequences``, ``features``): its first
    letter, or the next free one of i, j, k, ... when another plate has it, so that the diagram reads
    ``s = 1..sequences (sequences = 4)`` and ``x_{s,t}``, as a textbook writes, not ``x_{sequences,t}``.
    Plates with a given or a standard letter (``N -> i``) keep theirs; t is kept for time (a sequence's
    plate, `plates.markov`). Letters in `avoid` (the one-letter names of the program's variables) are not
    used either: a plate ``z_plate`` around a site ``z`` is indexed ``i``, so that ``z_i`` is not ``z_z``.

        >>> default_indices(["z_plate", "sequences"], avoid={"z"})
        {'z_plate': 'i', 'sequences': 's'}
    """
    given = dict(given or {})
    taken = {given.get(p) or DEFAULT_INDEX.get(p) for p in plates if p in given or p in DEFAULT_INDEX} | {"t"}
    taken |= set(avoid)
    out = {}
    for p in plates:
        if p in given or p in DEFAULT_INDEX or len(p) == 1 or not p[0].isalpha():
            continue
        letter = next((c for c in (p[0].lower(), *"ijklmnpqrsuvw") if c not in taken), p.lower())
        taken.add(letter)
        out[p] = letter
    return out


def canonical(label: str) -> str:
    """A label in its spelled-out form: ``"μ_k" -> "mu_k"``, ``"\\sigma" -> "sigma"``."""
    label = str(label).strip().strip("$")
    label = re.sub(r"\\([A-Za-z]+)", lambda m: m.group(1) if m.group(1) in GREEK else m.group(0), label)
    label = label.replace("{", "").replace("}", "")
    return "".join(_FROM_UNICODE.get(ch, ch) for ch in label)


def _split(label: str) -> tuple[str, str]:
    """``sigma_y`` -> (sigma, y) and ``x_0`` -> (x, 0); a multi-letter word keeps its underscore
    (``prior_scale`` is one name, not prior with subscript scale)."""
    base, _, sub = label.partition("_")
    if sub and (base in GREEK or len(base) == 1):
        return base, sub
    return label, ""


_OFFSET = re.compile(r"^([A-Za-z])([-+])(\d+)$")


def _is_offset(index: str) -> bool:
    """An index a step away from a letter: ``t-1`` (the step before, in a sequence)."""
    return bool(_OFFSET.match(index))


def plain(label: str, index: tuple[str, ...] = ()) -> str:
    """ASCII form: ``theta_k``; several indices run together (``x_id``), after any subscript a comma."""
    base, sub = _split(label)
    subs = ([sub] if sub else []) + list(index)
    if not subs:
        return base
    if len(subs) == 1 and not _is_offset(subs[0]):
        return f"{base}_{subs[0]}"
    if all(len(s) == 1 for s in subs):
        return f"{base}_{''.join(subs)}"
    return f"{base}_{{{','.join(subs)}}}"


def _unicode_word(word: str) -> str:
    return GREEK.get(word, word)


def unicode(label: str, index: tuple[str, ...] = ()) -> str:
    """Unicode text form: ``θ_k`` (used for plain-text DOT attributes such as tooltips)."""
    base, sub = _split(label)
    subs = ([_unicode_word(sub)] if sub else []) + list(index)
    return _unicode_word(base) + ("_" + ",".join(subs) if subs else "")


def html_label(label: str, index: tuple[str, ...] = ()) -> str:
    """Graphviz HTML-label form: italic single letters and Greek, subscripts as <SUB>."""
    base, sub = _split(label)

    def word(w: str) -> str:
        m = _OFFSET.match(w)
        if m:  # t-1: italic t, a minus sign
            return f"<I>{m.group(1)}</I>{'−' if m.group(2) == '-' else '+'}{m.group(3)}"
        if w in GREEK:
            return html.escape(GREEK[w])
        if len(w) == 1 and w.isalpha():
            return f"<I>{html.escape(w)}</I>"
        return html.escape(w)

    subs = ([word(sub)] if sub else []) + [word(i) for i in index]
    text = word(base)
    if subs:
        text += "<SUB>" + ",".join(subs) + "</SUB>"
    return text


def _latex_word(word: str) -> str:
    if word in GREEK:
        return "\\" + word
    if len(word) == 1 or word.isdigit() or _is_offset(word):
        return word
    return r"\mathrm{" + word.replace("_", r"\_") + "}"


def latex(label: str, index: tuple[str, ...] = ()) -> str:
    """LaTeX math form: ``\\theta_{k}``, ``\\mathrm{flips}_{i}``."""
    base, sub = _split(label)
    subs = ([_latex_word(sub)] if sub else []) + [_latex_word(i) for i in index]
    text = _latex_word(base)
    if subs:
        text += "_{" + ",".join(subs) + "}"
    return text


def number(value: float) -> str:
    """A constant as a person writes it in a figure: at most three significant digits, integers as integers.

    >>> [number(v) for v in (1.0, 0.5, -0.0388255, 4.42044, 12345.6, 1e-06)]
    ['1', '0.5', '-0.0388', '4.42', '12300', '1e-06']
    """
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    rounded = float(f"{v:.3g}")
    if rounded.is_integer() and abs(rounded) < 1e6:
        return str(int(rounded))
    return f"{rounded:g}"
