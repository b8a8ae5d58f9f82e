"""`Posterior`: the result of every engine, and its conversion to ArviZ (`InferenceData` under ArviZ 0.x,
`xarray.DataTree` under 1.x: `inference.arviz_compat` knows which).

Every method hands back draws shaped (chain, draw, ...): MCMC has chains and draws, SVI one chain of
draws from the guide, MAP/MLE one chain of one draw (the estimate). So `az.summary`, `az.loo`,
`az.compare` and the `az.plot_*` family work on all of them alike.

The per-observation groups (pointwise log-likelihood, posterior and prior predictive) hold one value per
draw and data point: on a million rows they were most of the run's time, memory and file (1.6 GB). They
are computed when `pointwise` says so; by default ("auto") only up to `POINTWISE_LIMIT` values, so a big
data set gets a small file and a note saying how to ask for them. `summary()` and `problems()` read the
posterior alone and never evaluate the model.

A discrete latent site of small finite support is summarised by the probability of each of its states,
one row ``P(site=state)`` per state (the names a model declares with ``infer={"states": [...]}``, else its
values 0, 1, ...): the mean of state indices means nothing. Every dimension in `to_arviz` is named from its
plate or its role (`inference.structure`); named states are also a ``<site>_state`` coordinate.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyro
import xarray as xr

from . import arviz_compat as azc
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
# an unnamed discrete site with at most this many values is summarised by one row per value, P(site=k); a
# site that declares its state names always is
MAX_STATE_ROWS = 16
# the columns a state's row keeps: the probability, its Monte-Carlo error, and the ESS and R-hat of the
# indicator draws; its sd, hdi and tail ESS (statistics of 0/1 draws) are left empty
STATE_COLUMNS = ("mean", "mcse_mean", "ess_bulk", "ess_mean", "r_hat")


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


def _per_site(table: pd.DataFrame, column: str, flagged: pd.Series, limit: str, limit_words: str, fmt: str,
              advice: str) -> list[str]:
    """One problem line per site with flagged rows of the diagnostics `table` (rows ``site`` or
    ``site[i, j]``): a site with one flagged value names it and its value (``x: R-hat 1.014 > 1.01: ...``),
    a site with several says how many of its values and the worst one (``W: R-hat above 1.01 in 12 of 30
    values, worst 1.530 (W[2, 1]): ...``), so that a site of a few hundred values is one line, not hundreds.
    The steps of a sequence (``x_0 ... x_29``) count as one site (`_steps_as_one`)."""
    label = {"r_hat": "R-hat", "ess_bulk": "bulk ESS"}[column]
    site = _steps_as_one(pd.Series([_site_of(str(name)) for name in table.index], index=table.index))

    def number(x: float) -> str:  # (R-hat of indicators that are constant within chains runs to 1e15)
        return fmt.format(x) if abs(x) < 1e4 else f"{x:.3g}"

    lines = []
    for name in dict.fromkeys(site[flagged]):  # (in the table's order)
        rows = table[flagged & (site == name)]
        values = rows[column]
        worst = values.idxmax() if column == "r_hat" else values.idxmin()
        if len(rows) == 1:
            lines.append(f"{worst}: {label} {number(values[worst])} {limit}: {advice}")
        else:
            lines.append(f"{name}: {label} {limit_words} in {len(rows)} of {int((site == name).sum())} values, worst "
                         f"{number(values[worst])} ({worst}): {advice}")
    return lines


_STEP = re.compile(r"^(P\()?(.+)_(\d+)(\))?$")


def _steps_as_one(site: pd.Series) -> pd.Series:
    """Sites numbered as the steps of a sequence (``x_0, x_1, ..., x_29`` from a ``pyro.markov`` loop; three or
    more of one name) as one: ``x_t, t = 0..29``, and ``P(x_t, t = 0..29)`` for their state rows. An HMM of 30
    steps gave a problem line per step and diagnostic, up to 60.

        >>> list(_steps_as_one(pd.Series(["mu", "x_0", "x_1", "x_2", "P(z_0)", "P(z_1)", "sigma_y"])))
        ['mu', 'x_t, t = 0..2', 'x_t, t = 0..2', 'x_t, t = 0..2', 'P(z_0)', 'P(z_1)', 'sigma_y']
    """
    steps: dict[tuple[str, str], set[int]] = {}
    for name in set(site):
        m = _STEP.match(name)
        if m and bool(m.group(1)) == bool(m.group(4)):
            steps.setdefault((m.group(1) or "", m.group(2)), set()).add(int(m.group(3)))

    def one(name: str) -> str:
        m = _STEP.match(name)
        key = (m.group(1) or "", m.group(2)) if m else None
        if key not in steps or len(steps[key]) < 3:
            return name
        label = f"{key[1]}_t, t = {min(steps[key])}..{max(steps[key])}"
        return f"P({label})" if key[0] else label

    return site.map(one)


def _stuck_chains(samples: dict[str, np.ndarray]) -> list[str]:
    """One line per site with values that each chain kept throughout while the chains disagree: the
    chains never moved between modes (an enumerated assignment, a label each chain settled on). R-hat has
    no value there (no within-chain variance: the summary prints it blank), so the rule on R-hat alone
    would pass them in silence. The steps of a sequence count as one site, as in `_per_site`.

        >>> z = np.zeros((4, 100, 3)); z[1, :, 0] = z[3, :, 0] = 1
        >>> _stuck_chains({"z": z})  # doctest: +NORMALIZE_WHITESPACE
        ['z[0]: each chain kept one value throughout (0, 1, 0, 1 in chains 0-3), and the chains disagree:
          they did not mix; run longer or check for multiple modes']
    """
    found = {}  # site -> (values stuck, values, the first stuck value's label, what each chain holds there)
    for name, draws in samples.items():
        draws = np.asarray(draws)
        if draws.ndim < 2 or draws.shape[0] < 2 or draws.shape[1] < 2:
            continue
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
        first = flat[:, :1]
        kept = np.all(flat == first, axis=1)  # (chain, value): the chain's draws never changed
        disagree = np.any(first[:, 0] != first[:1, 0], axis=0)
        stuck = np.flatnonzero(np.all(kept, axis=0) & disagree)
        if len(stuck):
            shown = int(stuck[0])
            index = np.unravel_index(shown, draws.shape[2:]) if draws.ndim > 2 else ()
            label = f"{name}[{', '.join(str(int(i)) for i in index)}]" if index else name
            held = ", ".join(_value_label(v.item()) for v in first[:, 0, shown])
            found[name] = (len(stuck), flat.shape[2], label, f"{held} in chains 0-{draws.shape[0] - 1}")
    group = _steps_as_one(pd.Series(list(samples), index=list(samples)))
    advice = "the chains disagree: they did not mix; run longer or check for multiple modes"
    lines = []
    for site in dict.fromkeys(group[list(found)]):
        members = [name for name in found if group[name] == site]
        count = sum(found[name][0] for name in members)
        total = sum(int(np.prod(np.shape(samples[name])[2:])) for name in group.index[group == site])
        _, _, label, held = found[members[0]]
        if count == 1:
            lines.append(f"{label}: each chain kept one value throughout ({held}), and {advice}")
        else:
            lines.append(f"{site}: each chain kept one value throughout in {count} of {total} values, "
                         f"first {label} ({held}), and {advice}")
    return lines


def _site_of(row: str) -> str:
    """The site a summary row belongs to: ``W`` for ``W[2, 1]``, ``P(x)`` for a discrete site's state row
    ``P(x[0, 3]=1)``."""
    if row.startswith("P(") and row.endswith(")"):
        return f"P({row[2:-1].split('=', 1)[0].split('[', 1)[0]})"
    return row.split("[", 1)[0]


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
    _idata: Any = field(default=None, repr=False)  # the ArviZ result (azc.Native) of to_arviz()
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

    @property
    def exact(self) -> bool:
        """Whether the draws come from the exact posterior: every latent site is discrete and summed out by
        enumeration, then drawn with ``infer_discrete`` (for MAP: the exact most probable assignment). No
        sampler or optimiser ran, whatever `method` was asked for."""
        s = self.structure
        return bool(s is not None and s.enumerated and not s.continuous and not s.non_enumerable)

    @property
    def engine(self) -> str:
        """What produced the draws, in words: ``"exact enumeration"`` when `exact`, else `method` (which
        always stays the method that was asked for)."""
        return "exact enumeration" if self.exact else self.method

    def replace_samples(self, samples: dict[str, np.ndarray], note: str) -> None:
        """Put `samples` (same sites and shapes) in place of the draws, say why in `notes`, and forget the
        ArviZ conversion made from the old ones (e.g. a mixture's draws relabelled into one canonical form)."""
        missing = set(self.samples) - set(samples)
        if missing:
            raise InputError("samples", f"lacks the sites {', '.join(sorted(missing))}")
        self.samples = dict(samples)
        self._idata = self._idata_pointwise = None
        self.notes.append(note)

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
    def _group_dims(self, group: str, data: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """Each variable's dimension names in `group`, from the array's own number of axes (the pointwise
        log-likelihood has only the batch axes of its site; observed data has no chain and draw).

        An axis shorter than another variable's axis of the same name in the group (an observation of
        length 1 broadcast along a plate) is renamed ``<variable>_<name>``: xarray refuses one name with
        two lengths."""
        if self.structure is None:
            return {}
        lead = 0 if group == "observed_data" else 2
        out, shapes, sizes = {}, {}, {}
        for k, v in data.items():
            if k in self.structure.dims:
                shapes[k] = np.shape(v)[lead:]
                out[k] = self.structure.dims_for(k, len(shapes[k]), log_prob=group in _LOG_DENSITY_GROUPS)
                for dim, size in zip(out[k], shapes[k]):
                    sizes[dim] = max(sizes.get(dim, 0), size)
        for k, dims in out.items():
            out[k] = [d if size == sizes[d] else f"{k}_{d}" for d, size in zip(dims, shapes[k])]
        return out

    def _dataset(self, group: str, data: dict[str, np.ndarray]) -> xr.Dataset:
        """One group as a Dataset, every dimension named (`_group_dims`) and named states attached: a
        coordinate ``<site>_state`` and CF attributes ``flag_values``/``flag_meanings`` on the variable."""
        dims = self._group_dims(group, data)
        if group == "observed_data":  # (ArviZ would give a scalar observation an axis of length 1)
            ds = xr.Dataset({k: (dims.get(k) or [f"{k}_extra_{i}" for i in range(np.ndim(v))], np.asarray(v))
                             for k, v in data.items()}, attrs=azc.make_attrs())
        else:
            ds = azc.dict_to_dataset(data, dims=dims, skip_event_dims=group in _LOG_DENSITY_GROUPS)
        if group in _LOG_DENSITY_GROUPS or self.structure is None:
            return ds
        for name, states in self.structure.states.items():
            if name in ds.data_vars and f"{name}_state" not in ds.dims:
                values = self.structure.support(name)
                ds = ds.assign_coords({f"{name}_state": np.array(states, dtype=object)})
                ds[name].attrs.update(flag_values=np.asarray(values), states=", ".join(states),
                                      flag_meanings=" ".join(st.replace(" ", "_") for st in states))
        return ds

    def to_arviz(self, prior: bool = True, predictive: bool = True,
                 pointwise: bool | str | None = None) -> azc.Native:
        """The installed ArviZ's own result (``InferenceData`` under 0.x, ``xarray.DataTree`` under 1.x) with
        groups posterior, sample_stats (MCMC), log_likelihood, log_prior (MCMC: the prior density of each
        parameter at each draw, for power-scaling prior sensitivity), posterior_predictive, observed_data,
        prior and prior_predictive (``prior=False`` skips the last two, ``predictive=False`` the posterior
        predictive); the optimisation loss of SVI/MAP/MLE goes in an extra ``loss`` group and the PSIS
        diagnostic of a variational or Laplace approximation in ``approximation``.

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
        with _understood_arviz_warnings():
            datasets = {g: (azc.dict_to_dataset(data) if g == "sample_stats" else self._dataset(g, data))
                        for g, data in groups.items()}
            if self.loss is not None and len(self.loss):
                datasets["loss"] = self._loss_group()
            if self.approximation is not None:
                datasets["approximation"] = self._approximation_group()
            idata = azc.from_datasets(datasets, attrs={
                "inference_library": "pyro", "method": self.method, "engine": self.engine,
                "exact": int(self.exact), "model": self.model_name or "", "notes": "; ".join(notes),
                "settings": repr(self.settings)})
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
            if self.method in ("nuts", "hmc") and not self.exact:  # (same cost as the log-likelihood: with it)
                logprior = pred.log_prior(self.model, self.data, s, self.samples)
                if logprior:
                    groups["log_prior"] = logprior
            if predictive:
                groups["posterior_predictive"] = pred.predictive(self.model, self.data, s, self.samples)
        groups["observed_data"] = pred.observed_data(s)
        if prior:
            latent, prior_pred = pred.prior(self.model, self.data, s, predictive=pointwise)
            groups["prior"] = latent
            if pointwise:
                groups["prior_predictive"] = prior_pred

    def _posterior_idata(self) -> azc.Native:
        """The posterior (and MCMC sample_stats) alone: what `summary` reads, without evaluating the model."""
        with _understood_arviz_warnings():
            datasets = {"posterior": azc.dict_to_dataset(self.samples, dims=self._group_dims("posterior", self.samples))}
            if self.sample_stats:
                datasets["sample_stats"] = azc.dict_to_dataset(self.sample_stats)
            return azc.from_datasets(datasets)

    def to_netcdf(self, path, pointwise: bool | str | None = None) -> str:
        """Write `to_arviz(pointwise=pointwise)` to `path` (ArviZ netCDF) and return the path written.

        zlib compression is used up to `COMPRESS_LIMIT` values: on float draws it saves about a tenth of
        the file, and above that it cost 15x the write itself (2e5 rows, pointwise on: 25 s against
        1.7 s for a file 11 % larger).
        """
        idata = self.to_arviz(pointwise=pointwise)
        values = sum(int(v.size) for g in azc.groups(idata) for v in azc.group(idata, g).data_vars.values())
        return azc.to_netcdf(idata, str(path), compress=values <= COMPRESS_LIMIT)

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
        """`az.summary` of the posterior (point estimates for MAP/MLE: no spread, no R-hat), the same table
        under ArviZ 0.x and 1.x (`arviz_compat.summary`: columns mean, sd, hdi_3%, hdi_97%, mcse_mean,
        mcse_sd, ess_bulk, ess_tail, r_hat; keyword arguments kind, round_to, hdi_prob, filter_vars, coords).

        A discrete latent site of small finite support (`state_sites`) has one row per state instead of
        one for its values: ``P(rain=yes)``, ``P(rain=no)`` (``P(z[0, 1]=2)`` for an element of a vector
        site), the probability as the mean, with its Monte-Carlo standard error and the ESS and R-hat of
        the indicator draws; its sd and hdi columns are empty. `var_names` names sites as usual.
        """
        idata = self._posterior_idata()
        if var_names is None:
            var_names = [k for k in self.samples if k not in self._local_discrete()]
        states = self.state_sites()
        with _understood_arviz_warnings(summary=True), _without_arviz_shape_log():
            if self.method in ("map", "mle"):
                kwargs.setdefault("kind", "stats")
            names = self._summary_names(idata, var_names, kwargs) if states else None
            if names is None or not any(n in states for n in names):
                return azc.summary(idata, var_names=var_names, **kwargs)
            kwargs.pop("filter_vars", None)
            frames, plain = [], []
            for name in names + [None]:  # consecutive plain sites in one call, in the order asked for
                if name is not None and name not in states:
                    plain.append(name)
                    continue
                if plain:
                    frames.append(azc.summary(idata, var_names=plain, **kwargs))
                    plain = []
                if name is not None:
                    frames.append(self._state_summary(name, *states[name], **kwargs))
            return pd.concat(frames)

    def prior_sensitivity(self) -> pd.DataFrame | None:
        """Power-scaling prior sensitivity (Kallioinen et al. 2024) of each global parameter, by ArviZ
        (`arviz_compat.prior_sensitivity`): columns ``prior`` and ``likelihood`` (the cumulative
        Jensen-Shannon distance of the posterior when either is raised to a power near 1) and priorsense's
        ``diagnosis`` (threshold 0.05). None where there is no ``log_prior`` group: methods other than NUTS
        and HMC, draws by exact enumeration, or the pointwise groups left out."""
        idata = self.to_arviz()
        if not azc.has_group(idata, "log_prior"):
            return None
        names = [k for k in self.samples if k not in self.local_sites() and k in self.structure.continuous]
        return azc.prior_sensitivity(idata, var_names=names or None)

    def sensitivity_note(self, table: pd.DataFrame | None = None) -> str | None:
        """One line naming the prior-sensitive parameters (or saying there are none), None where
        `prior_sensitivity` does not apply."""
        table = self.prior_sensitivity() if table is None else table
        if table is None:
            return None
        flagged = azc.sensitive_parameters(table)
        if not flagged:
            return ("prior sensitivity (power-scaling): no parameter is prior-sensitive "
                    f"(CJS distance < {azc.SENSITIVITY_THRESHOLD})")
        shown = [f"{n} ({table.loc[n, 'diagnosis'].replace('potential ', '')})" for n in flagged[:6]]
        more = f" and {len(flagged) - 6} more" if len(flagged) > 6 else ""
        return (f"prior sensitivity (power-scaling, CJS distance >= {azc.SENSITIVITY_THRESHOLD}): "
                f"{', '.join(shown)}{more}")

    def state_sites(self) -> dict[str, tuple[list[str], list]]:
        """site -> (state labels, values) for each latent site summarised per state: a scalar discrete site
        of finite support that declares its state names (``infer={"states": [...]}``), or has at most
        `MAX_STATE_ROWS` values (labelled by the values themselves)."""
        s = self.structure
        if s is None:
            return {}
        out = {}
        for name in self.samples:
            if name not in s.latent:
                continue
            values = s.support(name)
            if values is None:
                continue
            labels = s.states.get(name)
            if labels is None:
                if len(values) > MAX_STATE_ROWS:
                    continue
                labels = [_value_label(v) for v in values]
            out[name] = (labels, values)
        return out

    @staticmethod
    def _summary_names(idata: azc.Native, var_names: Any, kwargs: dict) -> list[str] | None:
        """The sites `var_names` selects (ArviZ's rules: ``~name``, ``filter_vars``), or None where the
        per-state rows do not apply (a coordinate selection)."""
        if "coords" in kwargs:
            return None
        return azc.select_names(idata, var_names, kwargs.get("filter_vars"))

    def _state_summary(self, name: str, labels: list[str], values: list, **kwargs) -> pd.DataFrame:
        """One row per state (and element) of a discrete site: the summary of its indicator draws."""
        draws = np.asarray(self.samples[name])
        shape = draws.shape[2:]
        indicators = {}
        for index in np.ndindex(*shape):
            where = f"[{', '.join(map(str, index))}]" if shape else ""
            x = draws[(slice(None), slice(None)) + index]
            for label, value in zip(labels, values):
                indicators[f"P({name}{where}={label})"] = (x == value).astype(float)
        table = azc.summary(azc.from_datasets({"posterior": azc.dict_to_dataset(indicators)}), **kwargs)
        blank = [c for c in table.columns if c not in STATE_COLUMNS]
        table[blank] = np.nan
        return table

    def local_sites(self) -> list[str]:
        """The latent sites with one value per data point (`inference.structure`'s local sites, and the
        enumerated discrete sites of more than 8 values), in the order of `samples`."""
        if self.structure is None:
            return []
        local = set(self.structure.local) | self._local_discrete()
        return [k for k in self.samples if k in local]

    def site_sizes(self, names: list[str]) -> str:
        """Sites with their number of values per draw, for a line of text: ``z (11,504 values)``."""
        return ", ".join(f"{k} ({np.size(self.samples[k][0, 0]):,} values)" for k in names)

    def _local_discrete(self) -> set[str]:
        if self.structure is None:
            return set()
        return {k for k in self.structure.enumerated if np.size(self.samples[k][0, 0]) > 8}

    def problems(self) -> list[str]:
        """What is wrong with the run, in words: R-hat above 1.01, chains each stuck at a value of their own
        (where R-hat has no value), bulk ESS below 100 per chain, divergences (MCMC); an optimisation stopped
        by its budget while its loss was still falling, or away from its optimum, and a Pareto k above 0.5
        (SVI, MAP). An empty list means the diagnostics found nothing to flag."""
        found = []
        if self.convergence is not None and self.convergence.problem() is not None:
            found.append(self.convergence.problem())
        if self.approximation is not None and self.approximation.problem(self.method) is not None:
            found.append(self.approximation.problem(self.method))
        if self.sample_stats.get("diverging") is not None:
            n = int(np.sum(self.sample_stats["diverging"]))
            if n:
                total = self.sample_stats["diverging"].size
                remedy = "raise target_accept or reparameterise"
                if self.settings.get("adaptation") == "pooled" and self.settings.get("backend", "fast") == "fast" \
                        and self.num_chains > 1:
                    # one step size for all chains can be too large for a chain that wanders where the
                    # posterior is narrower (the horseshoe, a funnel: docs/mcmc.md)
                    remedy += ", or give each chain its own step size (adaptation='pooled metric')"
                found.append(f"{n} of {total} transitions diverged: the sampler could not follow the "
                             f"posterior's geometry; {remedy}")
        if self.method in ("nuts", "hmc") and self.num_draws > 3 and not self.exact:
            # (exact draws are independent by construction: no chain to mix, nothing for R-hat or ESS to find)
            # raw values: ArviZ rounds to two decimals by default, which hid 1.014 and showed 1.0171 as 1.020
            table = self.summary(kind="diagnostics", round_to="none")
            if self.num_chains > 1:
                found += _per_site(table, "r_hat", table["r_hat"] > RHAT_LIMIT, f"> {RHAT_LIMIT}",
                                   f"above {RHAT_LIMIT}", "{:.3f}", "chains disagree; run longer or check for "
                                   "multiple modes")
                found += _stuck_chains(self.samples)
            limit = ESS_PER_CHAIN * self.num_chains
            found += _per_site(table, "ess_bulk", table["ess_bulk"] < limit, f"< {limit} ({ESS_PER_CHAIN} per chain)",
                               f"below {limit} ({ESS_PER_CHAIN} per chain)", "{:.0f}", "too few effective draws")
        return found

    def report(self, all_sites: bool = False) -> str:
        """The summary table followed by the problems found (or a line saying there are none).

        The first line says what produced the draws: the method, or exact enumeration (and the method that
        was asked for) where no sampler or optimiser ran (`exact`). The table holds the global sites; local
        latent sites (one value per data point: a VAE's codes, a mixture's assignments) are named in a line
        with their number of values, and ``all_sites=True`` prints their rows too. Columns with no value are
        left out and empty cells printed blank.
        """
        by = self.method
        if self.exact:
            by = ("exact enumeration, the most probable assignment" if self.method in ("map", "mle")
                  else "exact enumeration") + f" (method {self.method} requested)"
        lines = [f"{self.model_name or 'model'} by {by}: {self.num_chains} chain(s) x {self.num_draws} draw(s)"]
        lines += [f"note: {n}" for n in self.notes]
        local = [] if all_sites else self.local_sites()
        shown = [k for k in self.samples if k not in local]
        if shown:
            # a column with no value at all (R-hat of one chain; hdi where every row is a state's probability)
            # is left out, and an empty cell printed blank (summary.csv keeps every column)
            table = self.summary(shown).dropna(axis=1, how="all")
            with pd.option_context("display.width", 120, "display.max_columns", 20):
                lines.append(table.to_string(na_rep=""))
        if local:
            lines.append(f"local latent sites, one value per data point, not shown: {self.site_sizes(local)}; "
                         "summary(var_names=[...]) or `ppl fit --all-sites` prints them")
        problems = self.problems()
        lines += [f"WARNING: {p}" for p in problems] or ["diagnostics: no problems found"]
        return "\n".join(lines)


def _value_label(value: Any) -> str:
    """A support value as a state label: 1.0 -> "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The warnings ArviZ (and NumPy inside it) gives on the suite's own, well-formed draws, each understood; they
# are ignored only around the suite's calls into ArviZ (`_understood_arviz_warnings`), never process-wide, and
# every other warning passes:
# - "More chains (4) than draws (2)": ArviZ's guess that an array came transposed. The suite's draws are
#   (chain, draw) by construction, so a short run (fewer draws than chains) is not.
# - "Degrees of freedom <= 0 for slice" and "invalid value encountered in (scalar) divide", NumPy's
#   RuntimeWarnings where a statistic of the summary has no value: the sd of a single draw (MAP, MLE), the
#   R-hat and ESS of draws that never vary (the unit diagonal of a correlation matrix), the R-hat of draws
#   constant within each chain (an enumerated assignment each chain keeps: "invalid value encountered in
#   sqrt", once per value). The cell is NaN, which the report prints blank; chains stuck at different values
#   get a problem line of their own (`_stuck_chains`).
_LOG_DENSITY_GROUPS = ("log_likelihood", "log_prior")  # one value per draw and site element, no event dims
_MORE_CHAINS = r"More chains \(\d+\) than draws \(\d+\)"
_NO_STATISTIC = r"(Degrees of freedom <= 0 for slice|invalid value encountered in (scalar )?(divide|sqrt))"


@contextlib.contextmanager
def _understood_arviz_warnings(summary: bool = False):
    """Ignore the understood warnings above while the block converts draws (and, with `summary`, summarises
    them); the process's warning filters are restored afterwards."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_MORE_CHAINS, category=UserWarning, module=r"arviz(_base|_stats)?\.")
        if summary:
            warnings.filterwarnings("ignore", message=_NO_STATISTIC, category=RuntimeWarning,
                                    module=r"(numpy|arviz|arviz_base|arviz_stats)\.")
        yield


class _ShapeLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Shape validation failed")


@contextlib.contextmanager
def _without_arviz_shape_log():
    """ArviZ logs "Shape validation failed ... minimum_shape: (chains=2, draws=4)" for a one-chain posterior
    (SVI's draws, a single NUTS chain), where R-hat needs two chains; the summary's r_hat is NaN there,
    which says the same, and the log line reads like an error. Other ArviZ messages pass. (ArviZ 0.x logs
    through its own `arviz._log`, a logger outside `logging`'s registry.)"""
    logs = {logging.getLogger("arviz"), logging.getLogger("arviz_stats"), getattr(azc.az, "_log", None)} - {None}
    quiet = _ShapeLogFilter()
    for log in logs:
        log.addFilter(quiet)
    try:
        yield
    finally:
        for log in logs:
            log.removeFilter(quiet)
