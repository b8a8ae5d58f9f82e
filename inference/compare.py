"""One model fitted by several methods, side by side: posterior means and sds, elpd LOO, Pareto k, time,
and the problems each run found.

    >>> from inference.compare import compare
    >>> table = compare("coin", {"flips": [1, 0, 1, 1] * 5}, methods=("map", "mle"), progress=False)
    >>> table.methods_table().loc["map", "converged"]
    'yes'

The methods run one after another with the same seed; a method that fails is recorded with its one-line
error and the others go on. What is compared:

- per parameter (each scalar of each continuous site, discrete local sites left out as in `summary`): the
  posterior mean and sd by method (a point estimate has no sd);
- per method: the wall time, the draws, elpd LOO with its standard error (`az.loo`, for methods with more
  than one draw and a pointwise log-likelihood), the Pareto k of the approximation (SVI's guide, the
  Laplace approximation at a MAP), whether the optimiser converged, and the problems in words.

Why not `az.compare`: it ranks models by elpd; here one model is fitted by several methods, and most of
what tells them apart (convergence, Pareto k, the spread a point estimate lacks) is not an elpd.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ppl_models.registry import resolve

from ppl_models.errors import first_line, one_line

from . import arviz_compat as azc
from .errors import InputError
from .options import METHODS

DEFAULT_METHODS = ("nuts", "svi", "map")


@dataclass
class MethodRun:
    """One method's run: its Posterior (None when it failed), its wall time, and its error if it failed."""

    method: str
    seconds: float
    posterior: Any = None
    error: str | None = None


@dataclass
class Comparison:
    """The runs of one model by several methods (see the module docstring for what is compared)."""

    model: str
    runs: list[MethodRun] = field(default_factory=list)

    def parameters_table(self, max_rows: int | None = 40) -> pd.DataFrame:
        """Rows: parameters; columns: (method, mean) and (method, sd)."""
        columns = {}
        for run in self.runs:
            if run.posterior is None or not run.posterior.samples:
                continue
            summary = run.posterior.summary(kind="stats")
            columns[(run.method, "mean")] = summary["mean"]
            columns[(run.method, "sd")] = summary["sd"] if "sd" in summary else pd.Series(np.nan, summary.index)
        if not columns:
            return pd.DataFrame()
        table = pd.DataFrame(columns)
        table.columns = pd.MultiIndex.from_tuples(table.columns, names=["method", "statistic"])
        return table.head(max_rows) if max_rows is not None else table

    def methods_table(self) -> pd.DataFrame:
        """Rows: methods; columns: seconds, draws, elpd_loo, elpd_loo_se, pareto_k, converged, problems."""
        rows = {}
        for run in self.runs:
            post = run.posterior
            if post is None:
                rows[run.method] = {"seconds": round(run.seconds, 1), "draws": 0, "elpd_loo": np.nan,
                                    "elpd_loo_se": np.nan, "pareto_k": np.nan, "converged": "-",
                                    "problems": f"failed: {run.error}"}
                continue
            loo = _loo(post)
            convergence = getattr(post, "convergence", None)
            approximation = getattr(post, "approximation", None)
            problems = post.problems() + ([loo.why_not] if loo.why_not else [])
            rows[run.method] = {
                "seconds": round(run.seconds, 1),
                "draws": post.num_chains * post.num_draws,
                "elpd_loo": loo.elpd, "elpd_loo_se": loo.se,
                "pareto_k": approximation.pareto_k if approximation is not None else np.nan,
                "converged": "-" if convergence is None else ("yes" if convergence.converged else "no"),
                "problems": "; ".join(problems) if problems else "none",
            }
        return pd.DataFrame.from_dict(rows, orient="index")

    def report(self, max_rows: int = 40) -> str:
        """Both tables as text, the methods first."""
        with pd.option_context("display.width", 160, "display.max_columns", 30, "display.max_colwidth", 200,
                               "display.float_format", "{:.3f}".format):
            methods = self.methods_table()
            brief = methods.drop(columns=["problems"])
            lines = [f"{self.model}: {', '.join(r.method for r in self.runs)}", brief.to_string(), ""]
            for method, row in methods.iterrows():
                lines.append(f"{method} problems: {row['problems']}")
            parameters = self.parameters_table(max_rows=None)
            if not parameters.empty:
                lines += ["", parameters.head(max_rows).to_string()]
                if len(parameters) > max_rows:
                    lines.append(f"... {len(parameters) - max_rows} more parameters")
        return "\n".join(lines)


class _Loo(NamedTuple):
    elpd: float
    se: float
    why_not: str | None  # where an elpd that applies could not be computed: why, in one line


def _loo(post: Any) -> _Loo:
    """elpd LOO and its standard error; NaN where it does not apply (a point estimate, a model without
    observations) and, with the reason, where it applies but could not be computed."""
    if post.num_chains * post.num_draws < 2:
        return _Loo(math.nan, math.nan, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = post.to_arviz(prior=False, predictive=False)
            if not azc.has_group(idata, "log_likelihood"):
                return _Loo(math.nan, math.nan, None)
            loo = azc.loo(idata)
        return _Loo(loo.elpd, loo.se, None)
    except Exception as exc:  # noqa: BLE001 (too few draws, a log-likelihood ArviZ cannot read: said in the row)
        return _Loo(math.nan, math.nan, f"elpd_loo not computed: {first_line(exc)}")


def compare(model: Any, data: dict | None = None, methods: tuple[str, ...] | list[str] | None = None,
            seed: int = 0, progress: bool = True, options: dict[str, dict] | None = None) -> Comparison:
    """Fit `model` by each of `methods` (default: those of nuts, svi and map that apply) and compare them.

    Args:
        model, data, seed, progress: as for `fit`.
        methods: the methods to run, in order.
        options: method -> engine options for that method's `fit`, e.g. ``{"svi": {"guide": "mvn"}}``.
    """
    from .api import fit

    spec, _, name = resolve(model)
    engines = spec.engines if spec is not None else METHODS
    if methods is None:
        methods = tuple(m for m in DEFAULT_METHODS if m in engines) or tuple(engines[:1])
    methods = tuple(methods)
    if not methods:
        raise InputError("methods", "is empty; name at least one of " + ", ".join(METHODS))
    for method in methods:
        if method not in METHODS:
            raise InputError("methods", f"unknown method {method!r}; choose among {', '.join(METHODS)}")
    options = dict(options or {})
    for method in options:
        if method not in methods:
            raise InputError("options", f"has options for {method!r}, which is not among the methods compared")
    comparison = Comparison(name or getattr(model, "__name__", "model"))
    for method in methods:
        start = time.perf_counter()
        try:
            post = fit(model, data, method=method, seed=seed, progress=progress, **options.get(method, {}))
        except InputError:
            raise  # bad input is the caller's to fix, for every method alike
        except Exception as exc:  # noqa: BLE001 (a method that fails is one row; the others go on)
            comparison.runs.append(MethodRun(method, time.perf_counter() - start, None, one_line(exc)))
            continue
        comparison.runs.append(MethodRun(method, time.perf_counter() - start, post))
    return comparison
