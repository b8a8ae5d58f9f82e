"""`ppl demo`: fit every registered model on its embedded default data with its default engine.

Each model gets a sub-directory like a `ppl fit` run (posterior.nc, summary.csv, model.svg), and the
directory gets an `index.html` that shows them all. The whole directory is written atomically.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .io import atomic_directory

QUICK = {"nuts": {"num_chains": 2, "num_samples": 400, "num_warmup": 400},
         "hmc": {"num_chains": 2, "num_samples": 400, "num_warmup": 400},
         "svi": {"num_steps": 1500}, "map": {}, "mle": {}}


@dataclass
class DemoResult:
    name: str
    method: str
    seconds: float = 0.0
    summary_html: str = ""
    svg: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _fit_one(name: str, out: Path, progress: bool) -> DemoResult:
    import ppl_models

    from .cli import write_run

    spec = ppl_models.get(name)
    method = spec.default_method
    result = DemoResult(name, method)
    options = {**QUICK.get(method, {}), **spec.demo}
    start = time.perf_counter()
    try:
        data = spec.default_data(seed=0)
        post, summary, files, notes = write_run(spec, data, method, 0, options, out / name, progress)
        result.summary_html = summary.to_html(float_format=lambda v: f"{v:.3g}", border=0)
        result.problems = post.problems()
        result.notes = post.notes + notes
        svg = out / name / "model.svg"
        result.svg = svg.read_text(encoding="utf-8") if svg.exists() else ""
    except Exception as exc:  # a demo model failing is reported, and the demo goes on
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - start
    return result


def _page(results: list[DemoResult]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>ppl demo</title><style>",
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}",
             "table{border-collapse:collapse;font-size:90%}td,th{padding:2px 8px;text-align:right}",
             ".ok{color:#186a3b}.bad{color:#a93226}section{border-top:1px solid #ccc;margin-top:2em}",
             "</style></head><body><h1>ppl demo</h1><ul>"]
    for r in results:
        status = "failed" if r.error else ("problems" if r.problems else "ok")
        parts.append(f"<li><a href='#{r.name}'>{r.name}</a> ({r.method}, {r.seconds:.1f} s): "
                     f"<span class='{'ok' if status == 'ok' else 'bad'}'>{status}</span></li>")
    parts.append("</ul>")
    for r in results:
        parts.append(f"<section id='{r.name}'><h2>{r.name} <small>by {r.method}</small></h2>")
        if r.error:
            parts.append(f"<p class='bad'>failed: {html.escape(r.error)}</p></section>")
            continue
        parts.append(r.svg)
        parts.append(r.summary_html)
        for note in r.notes:
            parts.append(f"<p>note: {html.escape(note)}</p>")
        for problem in r.problems:
            parts.append(f"<p class='bad'>warning: {html.escape(problem)}</p>")
        if not r.problems:
            parts.append("<p class='ok'>diagnostics: no problems found</p>")
        parts.append(f"<p><a href='{r.name}/posterior.nc'>posterior.nc</a> · "
                     f"<a href='{r.name}/summary.csv'>summary.csv</a></p></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run_demo(out: Path, progress: bool = True) -> int:
    """Fit every model, write `out/` (one sub-directory per model and index.html); 1 if any model failed."""
    import ppl_models

    names = ppl_models.names()
    results = []
    with atomic_directory(out) as tmp:
        for name in tqdm(names, desc="demo", disable=not progress):
            results.append(_fit_one(name, tmp, progress=False))
        (tmp / "index.html").write_text(_page(results), encoding="utf-8")
    for r in results:
        status = f"FAILED: {r.error}" if r.error else (f"{len(r.problems)} problem(s)" if r.problems else "ok")
        print(f"{r.name:<22} {r.method:<5} {r.seconds:6.1f} s  {status}")
    print(f"wrote {out}/index.html")
    return 1 if any(r.error for r in results) else 0
