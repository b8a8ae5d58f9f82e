"""`ppl demo`: fit every registered model on its embedded default data with its default engine, and write
one report.

    ppl demo --out demo-out      # then open demo-out/index.html

Each model gets a sub-directory like a `ppl fit` run (posterior.nc, summary.csv, model.svg) plus the
report's figures (trace.png or loss.png, factorization.svg), and ``index.html`` shows them all: the
diagram, the factorization, the ArviZ summary, the figure and the oracle check (see `ppl.checks`).
Budgets are small (`QUICK`, overridden by a model's ``ModelSpec.demo``) so that the whole demo takes a
couple of minutes. A model that fails is reported on the page and the demo goes on; the exit status is 1
when any fit failed or any oracle check failed. The directory is written atomically.
"""

from __future__ import annotations

import html
import inspect
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from inference.fast import one_thread
from ppl_models.errors import one_line

from .rundir import run_directory
from .report import ModelReport, describe_data, inline_svg, page, row_site

QUICK: dict[str, dict[str, Any]] = {
    # four chains, as R-hat wants (the fast backend advances them as one batch, at little more than one's cost)
    "nuts": {"num_chains": 4, "num_samples": 500, "num_warmup": 300},
    "hmc": {"num_chains": 4, "num_samples": 500, "num_warmup": 300},
    "svi": {"num_steps": 500, "num_samples": 100},
    "map": {},
    "mle": {},
}


# one model fitted by several methods, side by side at the end of the page (`inference.compare`)
COMPARED = ("linear_regression", ("nuts", "svi", "map", "mle"))


def _comparison(progress: bool) -> tuple[str, str]:
    """The comparison section's HTML and a line for the terminal (or the failure, in words)."""
    import ppl_models
    from inference import compare

    from .report import comparison_section

    name, methods = COMPARED
    try:
        spec = ppl_models.get(name)
        comparison = compare(spec, spec.default_data(seed=0), methods=methods, progress=progress,
                             options={"nuts": demo_options(spec, "nuts")})
        table = comparison.methods_table()
        flagged = [m for m, row in table.iterrows() if row["problems"] != "none"]
        line = f"{name} compared by {', '.join(methods)}: " + (
            f"problems with {', '.join(flagged)}" if flagged else "no problems")
        return comparison_section(comparison), line
    except Exception as exc:  # the comparison is reported as failed; the demo's models stand
        text = one_line(exc)
        return (f"<section id='compare'><h2>Methods compared</h2><p class='bad'>failed: {html.escape(text)}</p>"
                "</section>", f"comparison failed: {text}")


def demo_options(spec: Any, method: str) -> dict[str, Any]:
    """The engine options of a quick run: the demo defaults, overridden by the model's own ``demo``."""
    return {**QUICK.get(method, {}), **dict(spec.demo)}


def _story(spec: Any) -> str:
    """The model module's docstring (the generative story as the course writes it)."""
    module = sys.modules.get(getattr(spec.model, "__module__", ""), None)
    doc = inspect.getdoc(module) if module is not None else None
    return doc or inspect.getdoc(spec.model) or ""


def _factorization(spec: Any, data: dict, folder: Path, report: ModelReport) -> None:
    """The factorization from `plates` (plain text, and typeset into folder/factorization.svg)."""
    try:
        import plates

        graph = plates.graph(spec, data)
    except Exception as exc:  # the diagram step reports its own failure; keep the section
        report.factorization = ""
        report.notes.append(f"factorization not available: {one_line(exc)}")
        return
    factorize = getattr(graph, "factorization", None)
    if factorize is None:
        report.notes.append("factorization not available: this version of plates has no factorization()")
        return
    report.factorization = factorize()
    try:
        from .figures import formula

        formula(factorize(latex=True), folder / "factorization.svg")
        report.factorization_img = f"{report.name}/factorization.svg"
    except Exception:  # mathtext could not typeset it: the plain text stays
        pass


def _figure(post: Any, folder: Path, report: ModelReport) -> None:
    from .figures import run_figures

    try:
        report.figures = [(f"{report.name}/{f.file}", f.caption) for f in run_figures(post, folder)]
    except Exception as exc:
        report.notes.append(f"figure not drawn: {one_line(exc)}")


def fit_one(name: str, out: Path, progress: bool = False) -> ModelReport:
    """Fit model `name` quickly, write its run directory `out/name` and return its section of the report."""
    import ppl_models

    from .checks import run_check
    from .runs import write_run

    spec = ppl_models.get(name)
    method = spec.default_method
    report = ModelReport(name, method, description=spec.description, story=_story(spec))
    start = time.perf_counter()
    try:
        data = spec.default_data(seed=0)
        report.data = describe_data(data)

        def figures(post: Any, folder: Path) -> None:  # inside the run directory, before it is committed
            svg = folder / "model.svg"
            if svg.exists():
                report.svg = inline_svg(svg.read_text(encoding="utf-8"), prefix=name)
            else:
                report.diagram_note = "diagram not drawn (Graphviz 'dot' is missing): model.dot holds its source"
            _factorization(spec, data, folder, report)
            _figure(post, folder, report)

        run = write_run(spec, data, method, 0, demo_options(spec, method), out / name, progress, extra=figures)
        post, summary = run.post, run.summary
        report.sensitivity, report.sensitivity_line = run.sensitivity, run.sensitivity_line
        local = post.local_sites()  # one value per data point: summary.csv has them, the page the global sites
        report.summary = summary
        if local:
            report.summary = summary[[row_site(i) not in local for i in summary.index]]
            report.local_sites = post.site_sizes(local)
        report.exact = post.exact
        if "num_steps" in spec.demo and post.convergence is not None and post.convergence.stopped_by == "budget":
            report.notes.append(f"the demo gives {name} a quick look ({spec.demo['num_steps']} steps), so the warning "
                                f"that the loss still falls is expected here; `ppl fit {name}` trains until the "
                                "loss is flat")
        report.problems = post.problems()
        report.notes = list(post.notes) + list(run.notes) + report.notes  # the figures' notes last
        try:
            report.check = run_check(name, post, data)
        except Exception as exc:  # an oracle that cannot run is a failed check, said in words
            from .checks import Check

            report.check = Check(False, f"the oracle check raised {one_line(exc)}")
        report.files = sorted(p.name for p in run.out.iterdir())
    except Exception as exc:  # a demo model failing is reported, and the demo goes on
        report.error = one_line(exc)
    report.seconds = time.perf_counter() - start
    return report


def run_demo(out: Path, progress: bool = True, names: list[str] | None = None, sbc: bool | None = None) -> int:
    """Fit every model (or `names`), write `out/` (a sub-directory per model and index.html).

    `sbc`: add the SBC section (`ppl.sbc_section`, about a minute); None: only for the whole demo.

    Returns 1 when a fit failed or an oracle check failed, else 0.
    """
    import ppl_models

    sbc = names is None if sbc is None else sbc
    names = list(names) if names is not None else ppl_models.names()
    reports = []
    start = time.perf_counter()
    with one_thread(), run_directory(out, {"command": "demo", "models": names}) as run:
        tmp = run.path
        bar = tqdm(names, desc="demo", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            reports.append(fit_one(name, tmp, progress=False))
        comparison, compared = _comparison(progress=False)
        if sbc:  # the SBC section (ppl.sbc_section): the cheap models, small R
            from .sbc_section import sbc_section

            calibration, calibrated = sbc_section(tmp, progress=False)
            comparison += calibration
        else:
            calibrated = []
        (tmp / "index.html").write_text(page(reports, time.perf_counter() - start, comparison), encoding="utf-8")
    width = max((len(n) for n in names), default=5)
    print(f"{'model':<{width}}  engine  {'time':>7}  diagnostics  oracle")
    for r in reports:
        status = f"FAILED: {r.error}" if r.error else r.diagnostics
        print(f"{r.name:<{width}}  {'exact' if r.exact else r.method:<6}  {r.seconds:5.1f} s  {status:<11}  {r.oracle}")
        if r.check is not None and not r.check.passed:
            print(f"  oracle check failed: {r.check.text}")
    print(compared)
    for line in calibrated:
        print(line)
    print(f"wrote {run.final}/index.html")
    return 1 if any(r.error or r.oracle == "failed" for r in reports) else 0

