"""`Posterior`: the result of every engine, and its conversion to ArviZ `InferenceData`.

Every method hands back draws shaped (chain, draw, ...): MCMC has chains and draws, SVI one chain of
draws from the guide, MAP/MLE one chain of one draw (the estimate). So `az.summary`, `az.loo`,
`az.compare` and the `az.plot_*` family work on all of them alike.
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
from .structure import ModelStructure

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


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
        notes: what the engine did that a reader should know (integrated sites, guide, optimizer).
        param_state: the param store at the end of the fit (learned point parameters such as network
            weights); every later evaluation of the model uses it.
    """

    samples: dict[str, np.ndarray]
    method: str
    settings: dict[str, Any]
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    loss: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    model: Callable | None = field(default=None, repr=False)
    data: dict = field(default_factory=dict, repr=False)
    structure: ModelStructure | None = field(default=None, repr=False)
    model_name: str | None = None
    guide: Any = field(default=None, repr=False)
    param_state: dict | None = field(default=None, repr=False)
    _idata: az.InferenceData | None = field(default=None, repr=False)

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

    # ---- ArviZ -------------------------------------------------------------------------------------
    def _dims(self, names) -> dict[str, list[str]]:
        dims = self.structure.dims if self.structure is not None else {}
        return {k: dims[k] for k in names if k in dims}

    def to_arviz(self, prior: bool = True, predictive: bool = True) -> az.InferenceData:
        """InferenceData with groups posterior, sample_stats (MCMC), log_likelihood, posterior_predictive,
        observed_data, prior and prior_predictive (``prior=False`` skips the last two); the optimisation
        loss of SVI/MAP/MLE goes in an extra ``loss`` group."""
        if self._idata is not None and prior and predictive:
            return self._idata
        s = self.structure
        groups: dict[str, Any] = {"posterior": self.samples}
        if self.sample_stats:
            groups["sample_stats"] = self.sample_stats
        notes = list(self.notes)
        if s is not None and self.model is not None and self.samples:
            with _param_store(self.param_state):
                self._evaluate(groups, notes, prior, predictive)
        all_names = set().union(*(g.keys() for g in groups.values() if isinstance(g, dict)))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_dict(**groups, dims=self._dims(all_names),
                                 attrs={"inference_library": "pyro", "method": self.method,
                                        "model": self.model_name or "", "notes": "; ".join(notes),
                                        "settings": repr(self.settings)})
            if self.loss is not None and len(self.loss):
                loss = xr.Dataset({"loss": ("step", np.asarray(self.loss, dtype=float))},
                                  coords={"step": np.arange(1, len(self.loss) + 1)})
                idata.add_groups({"loss": loss})
        if prior and predictive:
            self._idata = idata
        return idata

    def _evaluate(self, groups: dict, notes: list[str], prior: bool, predictive: bool) -> None:
        s = self.structure
        loglik, note = pred.log_likelihood(self.model, self.data, s, self.samples)
        if note:
            notes.append(note)
        if loglik:
            groups["log_likelihood"] = loglik
        if predictive:
            groups["posterior_predictive"] = pred.predictive(self.model, self.data, s, self.samples)
        groups["observed_data"] = pred.observed_data(s)
        if prior:
            latent, prior_pred = pred.prior(self.model, self.data, s)
            groups["prior"] = latent
            groups["prior_predictive"] = prior_pred

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
        idata = self.to_arviz(prior=False, predictive=False)
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
        divergences. An empty list means the diagnostics found nothing to flag."""
        found = []
        if self.sample_stats.get("diverging") is not None:
            n = int(np.sum(self.sample_stats["diverging"]))
            if n:
                total = self.sample_stats["diverging"].size
                found.append(f"{n} of {total} transitions diverged: the sampler could not follow the "
                             "posterior's geometry; raise target_accept or reparameterise")
        if self.method in ("nuts", "hmc") and self.num_draws > 3:
            table = self.summary(kind="diagnostics")
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
