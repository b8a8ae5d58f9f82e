"""`Posterior`: the result of every engine, and its conversion to ArviZ `InferenceData`.

Every method hands back draws shaped (chain, draw, ...): MCMC has chains and draws, SVI one chain of
draws from the guide, MAP/MLE one chain of one draw (the estimate). So `az.summary`, `az.loo`,
`az.compare` and the `az.plot_*` family work on all of them alike.

The per-observation groups (pointwise log-likelihood, posterior and prior predictive) hold one value per
draw and data point: on a million rows they were most of the run's time, memory and file (1.6 GB). They
are computed when `pointwise` says so; by default ("auto") only up to `POINTWISE_LIMIT` values, so a big
data set gets a small file and a note saying how to ask for them. `summary()` and `problems()` read the
posterior alone and never evaluate the model.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import arviz as az
import numpy as np
import pandas as pd
import pyro
import xarray as xr

from . import predictive as pred
from .approximation import Approximation
from .convergence import Convergence
from .errors import InputError
from .structure import ModelStructure

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100

# pointwise="auto" computes the per-observation groups when draws x observed values is at most this: 2e7
# values are 80 MB per group in float32 (log-likelihood and posterior predictive: 160 MB in memory and in
# posterior.nc, about 10 s to compute and write here), and `az.loo` on 2e7 pointwise values takes seconds.
# 4000 draws x 5000 rows is on; 4000 draws x 1e6 rows (8e9 values: 32 GB per group) is off.
POINTWISE_LIMIT = 20_000_000
POINTWISE_CHOICES = ("auto", True, False)
COMPRESS_LIMIT = 5_000_000  # `Posterior.to_netcdf` compresses files of at most this many values


def check_pointwise(value: Any) -> bool | str:
    """`value` as a pointwise setting ("auto", True or False); anything else raises `InputError`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return value
    raise InputError("pointwise", f'must be "auto", True or False, got {value!r}')


def pointwise_note(draws: int, observations: int) -> str:
    """The note a Posterior carries when "auto" leaves the pointwise groups out."""
    return (f"pointwise log-likelihood and predictive left out ({draws} draws x {observations} observations); "
            "pass pointwise=True to compute them (needed for az.loo)")


@contextlib.contextmanager
def _param_store(state: dict | None):
    """Evaluate with the learned parameters (network weights, pyro.param) a fit ended with, then put back
    whatever the global param store held: a later fit must not change an earlier Posterior."""
    if not state or not state.get("params"):
        yield
        return
    store = pyro.get_param_store()
    saved = store.get_state()
    store.clear()
    store.set_state(state)
    try:
        yield
    finally:
        store.clear()
        store.set_state(saved)


@dataclass
class Posterior:
    """Draws of the latent sites, shaped (chain, draw, ...), and everything known about the run.

    Attributes:
        samples: site name -> array (chain, draw, *site shape); discrete enumerated sites included.
        method: ``nuts``, ``hmc``, ``svi``, ``map`` or ``mle``.
        settings: the options the engine ran with (seed included).
        sample_stats: MCMC per-draw statistics (diverging, energy, lp, acceptance_rate, step_size,
            n_steps, tree_depth), each (chain, draw); empty for other methods.
        loss: the optimisation objective per step (negative ELBO or negative log density) for SVI/MAP/MLE.
        convergence: why SVI/MAP/MLE stopped and the loss's trend at the end (`inference.convergence`).
        approximation: the Pareto k diagnostic of the SVI guide or of the Laplace approximation at a MAP
            (`inference.approximation`), or None where it was not computed (the notes say why).
        notes: what the engine did that a reader should know (integrated sites, guide, optimizer).
        param_state: the param store at the end of the fit (learned point parameters such as network
            weights); every later evaluation of the model uses it.
        pointwise: whether `to_arviz` computes the per-observation groups (``log_likelihood``,
            ``posterior_predictive``, ``prior_predictive``): True, False, or "auto" (the default: on when
            draws x observed values is at most `POINTWISE_LIMIT`, else off with a note in `notes`).
    """

    samples: dict[str, np.ndarray]
    method: str
    settings: dict[str, Any]
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    loss: np.ndarray | None = None
    convergence: Convergence | None = None
    approximation: Approximation | None = None
    notes: list[str] = field(default_factory=list)
    model: Callable | None = field(default=None, repr=False)
    data: dict = field(default_factory=dict, repr=False)
    structure: ModelStructure | None = field(default=None, repr=False)
    model_name: str | None = None
    guide: Any = field(default=None, repr=False)
    param_state: dict | None = field(default=None, repr=False)
    pointwise: bool | str = "auto"
    _idata: az.InferenceData | None = field(default=None, repr=False)
    _idata_pointwise: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.pointwise = check_pointwise(self.pointwise)
        if self.pointwise == "auto" and not self.wants_pointwise():
            note = pointwise_note(*self.pointwise_size())
            if note not in self.notes:
                self.notes.append(note)

    # ---- shape -------------------------------------------------------------------------------------
    def learned_parameters(self) -> contextlib.AbstractContextManager:
        """A context in which Pyro's param store holds the parameters this fit ended with (network
        weights, ``pyro.param`` sites), put back as it was on exit; for evaluating a fitted deep model
        after other fits have run::

            with post.learned_parameters():
                elbo = vae.elbo_per_datum(post.data, x_test)
        """
        return _param_store(self.param_state)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0] if self.samples else 0

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1] if self.samples else 0

    def mean(self, site: str) -> np.ndarray:
        """Posterior mean of one site over chains and draws."""
        return self.samples[site].mean(axis=(0, 1))

    def pointwise_size(self) -> tuple[int, int]:
        """(draws over all chains, observed values per draw): their product is the number of values in
        each pointwise group."""
        draws = self.num_chains * self.num_draws
        if self.structure is None:
            return draws, 0
        nodes = self.structure.trace.nodes
        observations = sum(int(np.prod(tuple(nodes[k]["value"].shape))) for k in self.structure.observed)
        return draws, observations

    def wants_pointwise(self, pointwise: bool | str | None = None) -> bool:
        """Whether the pointwise groups are computed under `pointwise` (None: this Posterior's setting)."""
        setting = self.pointwise if pointwise is None else check_pointwise(pointwise)
        if setting != "auto":
            return bool(setting)
        draws, observations = self.pointwise_size()
        return draws * observations <= POINTWISE_LIMIT

    # ---- ArviZ -------------------------------------------------------------------------------------
    def _dims(self, names) -> dict[str, list[str]]:
        dims = self.structure.dims if self.structure is not None else {}
        return {k: dims[k] for k in names if k in dims}

    def to_arviz(self, prior: bool = True, predictive: bool = True,
                 pointwise: bool | str | None = None) -> az.InferenceData:
        """InferenceData with groups posterior, sample_stats (MCMC), log_likelihood, posterior_predictive,
        observed_data, prior and prior_predictive (``prior=False`` skips the last two, ``predictive=False``
        the posterior predictive); the optimisation loss of SVI/MAP/MLE goes in an extra ``loss`` group.

        ``pointwise`` (None: the Posterior's own setting, see `wants_pointwise`) decides whether the
        per-observation groups, log_likelihood, posterior_predictive and prior_predictive, are computed;
        without them the prior group keeps its latent draws.
        """
        keep = self.wants_pointwise(pointwise)
        if self._idata is not None and prior and predictive and self._idata_pointwise == keep:
            return self._idata
        s = self.structure
        groups: dict[str, Any] = {"posterior": self.samples}
        if self.sample_stats:
            groups["sample_stats"] = self.sample_stats
        note = pointwise_note(*self.pointwise_size())
        notes = [n for n in self.notes if n != note or not keep]
        if not keep and note not in notes:
            notes.append(note.replace("left out (", "left out (pointwise=False, "))
        if s is not None and self.model is not None and self.samples:
            with _param_store(self.param_state):
                self._evaluate(groups, notes, prior, predictive, keep)
        all_names = set().union(*(g.keys() for g in groups.values() if isinstance(g, dict)))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_dict(**groups, dims=self._dims(all_names),
                                 attrs={"inference_library": "pyro", "method": self.method,
                                        "model": self.model_name or "", "notes": "; ".join(notes),
                                        "settings": repr(self.settings)})
            if self.loss is not None and len(self.loss):
                idata.add_groups({"loss": self._loss_group()})
            if self.approximation is not None:
                idata.add_groups({"approximation": self._approximation_group()})
        if prior and predictive:
            self._idata, self._idata_pointwise = idata, keep
        return idata

    def _loss_group(self) -> xr.Dataset:
        """The loss per step; the attributes say why the run stopped and the loss's trend at its end."""
        loss = xr.Dataset({"loss": ("step", np.asarray(self.loss, dtype=float))},
                          coords={"step": np.arange(1, len(self.loss) + 1)})
        c = self.convergence
        if c is not None:
            loss.attrs.update({"stopped_by": c.stopped_by, "steps": c.steps, "budget": c.budget,
                               "converged": int(c.converged), "trend_window": c.trend.window,
                               "trend_change": c.trend.change, "trend_se": c.trend.se, "description": c.describe()})
            for key in ("grad_norm", "newton_decrement", "gap"):
                if getattr(c, key) is not None:
                    loss.attrs[key] = getattr(c, key)
        return loss

    def _approximation_group(self) -> xr.Dataset:
        """The PSIS diagnostic: Pareto k, and the smoothed log weight of each draw of the proposal."""
        a = self.approximation
        return xr.Dataset({"pareto_k": ((), a.pareto_k),
                           "log_weight": ("psis_draw", np.asarray(a.log_weights, dtype=float))},
                          coords={"psis_draw": np.arange(a.num_draws)},
                          attrs={"proposal": a.proposal, "verdict": a.verdict, "description": a.describe()})

    def _evaluate(self, groups: dict, notes: list[str], prior: bool, predictive: bool, pointwise: bool) -> None:
        s = self.structure
        if pointwise:
            loglik, note = pred.log_likelihood(self.model, self.data, s, self.samples)
            if note:
                notes.append(note)
            if loglik:
                groups["log_likelihood"] = loglik
            if predictive:
                groups["posterior_predictive"] = pred.predictive(self.model, self.data, s, self.samples)
        groups["observed_data"] = pred.observed_data(s)
        if prior:
            latent, prior_pred = pred.prior(self.model, self.data, s, predictive=pointwise)
            groups["prior"] = latent
            if pointwise:
                groups["prior_predictive"] = prior_pred

    def _posterior_idata(self) -> az.InferenceData:
        """The posterior (and MCMC sample_stats) alone: what `summary` reads, without evaluating the model."""
        groups: dict[str, Any] = {"posterior": self.samples}
        if self.sample_stats:
            groups["sample_stats"] = self.sample_stats
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.from_dict(**groups, dims=self._dims(self.samples))

    def to_netcdf(self, path, pointwise: bool | str | None = None) -> str:
        """Write `to_arviz(pointwise=pointwise)` to `path` (ArviZ netCDF) and return the path written.

        zlib compression is used up to `COMPRESS_LIMIT` values: on float draws it saves about a tenth of
        the file, and above that it cost 15x the write itself (2e5 rows, pointwise on: 25 s against
        1.7 s for a file 11 % larger).
        """
        idata = self.to_arviz(pointwise=pointwise)
        values = sum(int(v.size) for g in idata.groups() for v in idata[g].data_vars.values())
        return idata.to_netcdf(str(path), compress=values <= COMPRESS_LIMIT)

    # ---- prediction --------------------------------------------------------------------------------
    def predict(self, data: dict | None = None, sites: list[str] | None = None) -> dict[str, np.ndarray]:
        """Posterior-predictive draws (chain, draw, ...) of the observed sites for new inputs `data`.

        `data` holds the model's inputs (e.g. a new ``X``); observed fields may be left out, since
        each is drawn. With no `data`, the predictive is for the data the model was fitted on.
        """
        from .structure import inspect_model

        if self.model is None or self.structure is None:
            raise ValueError("this Posterior has no model attached")
        if data is None:
            new_data, structure = self.data, self.structure
        else:
            new_data = dict(self.data)
            for name in self.structure.observed:
                new_data.pop(name, None)
            new_data.update(data)
            structure = inspect_model(self.model, new_data)
        sites = list(self.structure.observed if sites is None else sites)
        with _param_store(self.param_state):
            return pred.predictive(self.model, new_data, structure, self.samples, sites=sites)

    # ---- diagnostics -------------------------------------------------------------------------------
    def summary(self, var_names: list[str] | None = None, **kwargs) -> pd.DataFrame:
        """`az.summary` of the posterior (point estimates for MAP/MLE: no spread, no R-hat)."""
        idata = self._posterior_idata()
        if var_names is None:
            var_names = [k for k in self.samples if k not in self._local_discrete()]
        with warnings.catch_warnings(), _without_arviz_shape_log():
            warnings.simplefilter("ignore")
            if self.method in ("map", "mle"):
                kwargs.setdefault("kind", "stats")
            return az.summary(idata, var_names=var_names, **kwargs)

    def _local_discrete(self) -> set[str]:
        if self.structure is None:
            return set()
        return {k for k in self.structure.enumerated if np.size(self.samples[k][0, 0]) > 8}

    def problems(self) -> list[str]:
        """What is wrong with the run, in words: R-hat above 1.01, bulk ESS below 100 per chain,
        divergences (MCMC); an optimisation stopped by its budget while its loss was still falling, or
        away from its optimum, and a Pareto k above 0.5 (SVI, MAP). An empty list means the diagnostics
        found nothing to flag."""
        found = []
        if self.convergence is not None and self.convergence.problem() is not None:
            found.append(self.convergence.problem())
        if self.approximation is not None and self.approximation.problem(self.method) is not None:
            found.append(self.approximation.problem(self.method))
        if self.sample_stats.get("diverging") is not None:
            n = int(np.sum(self.sample_stats["diverging"]))
            if n:
                total = self.sample_stats["diverging"].size
                found.append(f"{n} of {total} transitions diverged: the sampler could not follow the "
                             "posterior's geometry; raise target_accept or reparameterise")
        if self.method in ("nuts", "hmc") and self.num_draws > 3:
            # raw values: ArviZ rounds to two decimals by default, which hid 1.014 and showed 1.0171 as 1.020
            table = self.summary(kind="diagnostics", round_to="none")
            if self.num_chains > 1:
                bad = table[table["r_hat"] > RHAT_LIMIT]
                for name, row in bad.iterrows():
                    found.append(f"{name}: R-hat {row['r_hat']:.3f} > {RHAT_LIMIT}: chains disagree; "
                                 "run longer or check for multiple modes")
            low = table[table["ess_bulk"] < ESS_PER_CHAIN * self.num_chains]
            for name, row in low.iterrows():
                found.append(f"{name}: bulk ESS {row['ess_bulk']:.0f} < {ESS_PER_CHAIN * self.num_chains} "
                             f"({ESS_PER_CHAIN} per chain): too few effective draws")
        return found

    def report(self) -> str:
        """The summary table followed by the problems found (or a line saying there are none)."""
        lines = [f"{self.model_name or 'model'} by {self.method}: {self.num_chains} chain(s) x "
                 f"{self.num_draws} draw(s)"]
        lines += [f"note: {n}" for n in self.notes]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines.append(self.summary().to_string())
        problems = self.problems()
        lines += [f"WARNING: {p}" for p in problems] or ["diagnostics: no problems found"]
        return "\n".join(lines)


class _ShapeLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Shape validation failed")


@contextlib.contextmanager
def _without_arviz_shape_log():
    """ArviZ logs "Shape validation failed ... minimum_shape: (chains=2, draws=4)" for a one-chain posterior
    (SVI's draws, a single NUTS chain), where R-hat needs two chains; the summary's r_hat is NaN there,
    which says the same, and the log line reads like an error. Other ArviZ messages pass. (ArviZ 0.x logs
    through its own `arviz._log`, a logger outside `logging`'s registry.)"""
    logs = {logging.getLogger("arviz"), getattr(az, "_log", None)} - {None}
    quiet = _ShapeLogFilter()
    for log in logs:
        log.addFilter(quiet)
    try:
        yield
    finally:
        for log in logs:
            log.removeFilter(quiet)
