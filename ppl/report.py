"""The demo report: one static HTML page, one section per model.

Each section shows the model's plate diagram (its SVG inlined), the factorization of the joint density
(typeset, with the plain text beside it), the ArviZ summary table, a trace plot (MCMC) or loss curve
(SVI/MAP/MLE), the diagnostics in words and the oracle check marked passed or failed. Figures are files
beside ``index.html`` referenced by relative paths, so the directory opens in a browser with no server.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

MAX_SUMMARY_ROWS = 24
MAX_SITE_ROWS = 12  # a site with more rows (one per data point, like a VAE's z) ...
SHOWN_SITE_ROWS = 6  # ... shows its first few


@dataclass
class ModelReport:
    """Everything one section of the page shows; image paths are relative to ``index.html``."""

    name: str
    method: str
    exact: bool = False  # the draws came from exact enumeration: no sampler or optimiser ran
    description: str = ""
    story: str = ""
    data: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    svg: str = ""
    diagram_note: str = ""
    factorization: str = ""
    factorization_img: str = ""
    summary: pd.DataFrame | None = None
    local_sites: str = ""  # local latent sites left out of the table, with their sizes ("z (11,504 values)")
    figures: list[tuple[str, str]] = field(default_factory=list)  # (src, caption): trace or loss, then the model's pictures
    check: Any = None  # ppl.checks.Check or None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    error: str | None = None
    sensitivity: pd.DataFrame | None = None  # power-scaling prior sensitivity (MCMC fits), `Posterior.prior_sensitivity`
    sensitivity_line: str | None = None  # its one line

    @property
    def diagnostics(self) -> str:
        """failed (the fit raised), problems, ok, or n/a (no sampler diagnostics apply: SVI, MAP, MLE)."""
        if self.error:
            return "failed"
        if self.problems:
            return "problems"
        return "ok" if self.method in ("nuts", "hmc") and not self.exact else "n/a"

    @property
    def engine(self) -> str:
        """What produced the draws: the method, or exact enumeration and the method that was asked for."""
        return f"exact enumeration (method {self.method} requested)" if self.exact else self.method

    @property
    def oracle(self) -> str:
        if self.check is None:
            return "none"
        return "passed" if self.check.passed else "failed"

    def images(self) -> list[str]:
        return [src for src, _ in self.figures] + ([self.factorization_img] if self.factorization_img else [])


# ---- pieces ------------------------------------------------------------------------------------------
def describe_data(data: dict) -> list[tuple[str, str]]:
    """(key, what it holds) for the data table: arrays by shape and dtype, small values as they are."""
    rows = []
    for key, value in data.items():
        if isinstance(value, (np.ndarray, list, tuple)) or hasattr(value, "shape"):
            array = np.asarray(value)
            if array.ndim == 0:
                rows.append((key, repr(array.item())))
                continue
            shape = " x ".join(str(s) for s in array.shape)
            kind = "0/1" if array.size and np.isin(array, (0, 1)).all() else str(array.dtype)
            rows.append((key, f"array {shape} ({kind})"))
        elif isinstance(value, dict):
            inner = ", ".join(f"{k} = {v}" for k, v in value.items())
            rows.append((key, f"{{{inner}}}" if inner else "{}"))
        else:
            text = repr(value)
            rows.append((key, text if len(text) < 80 else text[:77] + "..."))
    return rows


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^")]+)')


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG file's text ready to sit inside HTML: no XML prolog, DOCTYPE or comments, and every id
    prefixed so that several diagrams on one page do not collide (Graphviz numbers them all node1...)."""
    svg = _COMMENT.sub("", _PROLOG.sub("", svg, count=1)).strip()
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    return _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "" if np.isnan(value) else str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return html.escape(str(value))


def row_site(row_name: Any) -> str:
    """The site a summary row belongs to: ``W[0, 1]`` -> W, a state's row ``P(z[0, 1]=yes)`` -> z."""
    text = str(row_name)
    if text.startswith("P(") and text.endswith(")") and "=" in text:
        text = text[2:].split("=", 1)[0]
    return text.split("[", 1)[0]


def summary_table(summary: pd.DataFrame | None) -> str:
    """The ArviZ summary as an HTML table: every row of a small site, the first SHOWN_SITE_ROWS of a site
    with more than MAX_SITE_ROWS (one per data point), at most MAX_SUMMARY_ROWS in all; the rest are in
    summary.csv. Columns with no value at all (R-hat of a single chain) are left out."""
    if summary is None or summary.empty:
        return "<p class='muted'>no summary (the posterior has no draws to summarise)</p>"
    summary = summary.dropna(axis=1, how="all")
    sites = pd.Series([row_site(i) for i in summary.index], index=summary.index)
    rank = sites.groupby(sites).cumcount()
    size = sites.map(sites.value_counts())
    keep = (size <= MAX_SITE_ROWS) | (rank < SHOWN_SITE_ROWS)
    shown = summary[keep.values].head(MAX_SUMMARY_ROWS)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for name, row in shown.iterrows():
        cells = []
        for col, value in row.items():
            cls = ""
            if col == "r_hat" and np.isfinite(value) and value > 1.01:
                cls = " class='bad'"
            cells.append(f"<td{cls}>{_fmt(value)}</td>")
        rows.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(cells)}</tr>")
    more = len(summary) - len(shown)
    tail = f"<p class='muted'>... and {more} more rows in summary.csv</p>" if more > 0 else ""
    return f"<table class='summary'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}"


def _badge(text: str, kind: str) -> str:
    return f"<span class='badge {kind}'>{html.escape(text)}</span>"


def _status_badges(r: ModelReport) -> str:
    diag = {"ok": ("diagnostics ok", "ok"), "problems": (f"{len(r.problems)} diagnostic warning(s)", "warn"),
            "failed": ("fit failed", "bad"),
            "n/a": ("exact draws: no sampler diagnostics" if r.exact else f"no sampler diagnostics ({r.method})",
                    "muted")}[r.diagnostics]
    oracle = {"passed": ("oracle check passed", "ok"), "failed": ("oracle check FAILED", "bad"),
              "none": ("no oracle", "muted")}[r.oracle]
    return _badge(*diag) + " " + _badge(*oracle)


def _section(r: ModelReport) -> str:
    e = html.escape
    out = [f"<section id='{e(r.name)}'>",
           f"<h2>{e(r.name)} <small>by {e(r.engine)} · {r.seconds:.1f} s</small></h2>",
           f"<p class='status'>{_status_badges(r)}</p>"]
    if r.description:
        out.append(f"<p class='description'>{e(r.description)}</p>")
    if r.error:
        out.append(f"<p class='bad'>the fit failed: {e(r.error)}</p></section>")
        return "\n".join(out)

    # the three views: the graph, the factorization and the program (the generative story)
    out.append("<div class='views'><div class='diagram'>")
    out.append(r.svg or f"<p class='muted'>{e(r.diagram_note or 'diagram not available')}</p>")
    out.append("</div><div class='side'>")
    if r.data:
        out.append("<h3>data (embedded default)</h3><table class='data'>")
        out.extend(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in r.data)
        out.append("</table>")
    if r.story:
        out.append(f"<details><summary>the model's generative story</summary><pre>{e(r.story)}</pre></details>")
    out.append("</div></div>")
    out.append("<div class='factorization'><h3>factorization of the joint density</h3>")
    if r.factorization_img:
        out.append(f"<img class='formula' src='{e(r.factorization_img)}' alt='{e(r.factorization)}'>")
    out.append(f"<p><code>{e(r.factorization)}</code></p>" if r.factorization
               else "<p class='muted'>factorization not available</p>")
    out.append("</div>")

    # the oracle
    if r.check is not None:
        kind = "ok" if r.check.passed else "bad"
        out.append(f"<div class='check {kind}'><b>oracle check {'passed' if r.check.passed else 'FAILED'}</b>: "
                   f"{e(r.check.text)}</div>")
    else:
        out.append("<div class='check muted'>no oracle check is registered for this model</div>")

    out.append("<h3>posterior summary (ArviZ)</h3>")
    if r.local_sites and (r.summary is None or r.summary.empty):
        out.append(f"<p class='muted'>no global latent site: the model's latent sites are local, one value per "
                   f"data point ({e(r.local_sites)}); summary.csv has their rows</p>")
    else:
        out.append(summary_table(r.summary))
        if r.local_sites:
            out.append(f"<p class='muted'>local latent sites, one value per data point, are left out of this "
                       f"table ({e(r.local_sites)}); summary.csv has their rows</p>")
    for problem in r.problems:
        out.append(f"<p class='warn'>warning: {e(problem)}</p>")
    if r.diagnostics == "ok":
        out.append("<p class='ok'>diagnostics: no problems found (R-hat, bulk ESS, divergences)</p>")
    elif r.diagnostics == "n/a" and r.exact:
        out.append("<p class='muted'>the draws are independent draws of the exact posterior (every latent site is "
                   "discrete and summed out by enumeration): there is no chain for R-hat or ESS to judge</p>")
    elif r.diagnostics == "n/a":
        out.append(f"<p class='muted'>R-hat, ESS and divergences are MCMC diagnostics; for {e(r.method)} the "
                   "objective's curve below shows whether the optimisation settled</p>")
    if r.sensitivity_line:
        flagged = r.sensitivity is not None and (r.sensitivity["diagnosis"] != "✓").any()
        out.append(f"<p class='{'warn' if flagged else 'ok'}'>{e(r.sensitivity_line)}</p>")
        if r.sensitivity is not None and not r.sensitivity.empty:
            out.append("<details><summary>prior sensitivity by parameter (power-scaling, ArviZ; CJS distance of the "
                       "posterior when the prior or the likelihood is raised to a power near 1)</summary>"
                       + r.sensitivity.to_html(float_format=lambda v: f"{v:.3f}", na_rep="", border=0)
                       + "</details>")
    for src, caption in r.figures:
        out.append(f"<figure><img src='{e(src)}' alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>")
    for note in r.notes:
        out.append(f"<p class='note'>note: {e(note)}</p>")
    if r.files:
        links = " · ".join(f"<a href='{e(r.name)}/{e(f)}'>{e(f)}</a>" for f in r.files)
        out.append(f"<p class='files'>run directory <code>{e(r.name)}/</code>: {links}</p>")
    out.append("</section>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
     color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{margin:0 0 .3em}h2 small{font-weight:normal;color:#666;font-size:60%}
h3{font-size:100%;margin:.8em 0 .3em}
section{border-top:2px solid #ddd;margin-top:2.2em;padding-top:1em}
table{border-collapse:collapse;font-size:88%}td,th{padding:2px 8px;text-align:right}
table.summary thead th{border-bottom:1px solid #999}table.summary tbody tr:nth-child(even){background:#f6f6f6}
table.data th,table.data td{text-align:left}table.overview td,table.overview th{text-align:left;padding:3px 10px}
table.overview thead th{border-bottom:1px solid #999}
.views{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}
.diagram{flex:0 1 auto;max-width:55%}.diagram svg{max-width:100%;height:auto}
.side{flex:1 1 300px;min-width:280px}
img.formula{max-width:100%;margin:.3em 0}.factorization{overflow-x:auto}code{font-size:90%;background:#f4f4f4;padding:1px 4px;border-radius:3px}
figure{margin:1em 0}figure img{max-width:100%}figcaption{color:#666;font-size:85%}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:85%;border:1px solid}
.badge.ok{color:#186a3b;border-color:#186a3b;background:#e9f7ef}.badge.bad{color:#a93226;border-color:#a93226;
background:#fdedec}.badge.warn{color:#9a6700;border-color:#9a6700;background:#fff8e5}
.badge.muted{color:#666;border-color:#bbb}
.check{padding:.5em .8em;border-left:4px solid;margin:1em 0;font-size:92%}
.check.ok{border-color:#186a3b;background:#e9f7ef}.check.bad{border-color:#a93226;background:#fdedec}
.check.muted{border-color:#bbb;background:#f6f6f6;color:#555}
.ok{color:#186a3b}.bad{color:#a93226}.warn{color:#9a6700}.muted{color:#777}.note{color:#555;font-size:90%}
details pre{background:#f6f6f6;padding:.6em;font-size:85%;white-space:pre-wrap}
.files{font-size:85%}
"""


def comparison_section(comparison: Any) -> str:
    """One model fitted by several methods (`inference.compare`): the methods table (time, draws, elpd LOO,
    Pareto k, converged, problems) and every parameter's mean and sd by method."""
    e = html.escape
    methods = comparison.methods_table()
    rows = []
    for method, row in methods.iterrows():
        problems = row["problems"]
        kind = "ok" if problems == "none" else "warn"
        rows.append(f"<tr><th>{e(str(method))}</th><td>{row['seconds']:.1f} s</td><td>{int(row['draws'])}</td>"
                    f"<td>{_fmt(row['elpd_loo'])}</td><td>{_fmt(row['elpd_loo_se'])}</td><td>{_fmt(row['pareto_k'])}</td>"
                    f"<td>{e(str(row['converged']))}</td><td class='{kind}'>{e(problems)}</td></tr>")
    parameters = comparison.parameters_table()
    head = "".join(f"<th>{e(m)} {e(stat)}</th>" for m, stat in parameters.columns)
    body = "".join(f"<tr><th>{e(str(name))}</th>{''.join(f'<td>{_fmt(v)}</td>' for v in row.values)}</tr>"
                   for name, row in parameters.iterrows())
    return (f"<section id='compare'><h2>One model, several methods: {e(comparison.model)}</h2>"
            "<p>The same model and data fitted by each method (<code>ppl compare "
            f"{e(comparison.model)}</code>). Pareto k tests the approximation each method makes of the posterior "
            "(SVI's guide, the Laplace approximation at the MAP): below 0.5 good, 0.5-0.7 doubtful, above 0.7 "
            "unreliable. A point estimate has no sd and no elpd LOO.</p>"
            "<table class='summary'><thead><tr><th>method</th><th>time</th><th>draws</th><th>elpd LOO</th>"
            "<th>se</th><th>Pareto k</th><th>converged</th><th>problems</th></tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table>"
            f"<table class='summary'><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table></section>")


def page(reports: list[ModelReport], total_seconds: float | None = None, comparison: str = "") -> str:
    """The whole HTML page (`comparison`: the HTML of `comparison_section`, placed after the models)."""
    e = html.escape
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    passed = sum(r.oracle == "passed" for r in reports)
    checked = sum(r.oracle != "none" for r in reports)
    took = f" in {total_seconds:.0f} s" if total_seconds is not None else ""
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>ppl demo: {len(reports)} models</title><style>{_CSS}</style></head><body>",
             "<h1>ppl demo</h1>",
             f"<p class='muted'>{len(reports)} models, each fitted on its embedded default data with its default "
             f"engine{took} ({when}). Oracle checks: {passed} of {checked} passed.</p>",
             "<table class='overview'><thead><tr><th>model</th><th>engine</th><th>time</th><th>diagnostics</th>"
             "<th>oracle check</th></tr></thead><tbody>"]
    for r in reports:
        diag_kind = {"ok": "ok", "problems": "warn", "failed": "bad", "n/a": "muted"}[r.diagnostics]
        oracle_kind = {"passed": "ok", "failed": "bad", "none": "muted"}[r.oracle]
        parts.append(f"<tr><td><a href='#{e(r.name)}'>{e(r.name)}</a></td><td>{e('exact' if r.exact else r.method)}</td>"
                     f"<td>{r.seconds:.1f} s</td><td class='{diag_kind}'>{r.diagnostics}</td>"
                     f"<td class='{oracle_kind}'>{r.oracle}</td></tr>")
    parts.append("</tbody></table>")
    parts.extend(_section(r) for r in reports)
    parts.append(comparison)
    parts.append("</body></html>")
    return "\n".join(parts)
