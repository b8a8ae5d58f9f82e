"""The one place that knows which ArviZ is installed: 0.x (``InferenceData``, Python 3.10-3.11 and up) or
1.x (``xarray.DataTree``; arviz-base, arviz-stats and arviz-plots; Python 3.12 and up).

Every other module of the suite calls these thin wrappers and never a version-specific name. Each returns
the same thing under both versions:

- `from_datasets` builds the native result (an ``InferenceData`` under 0.x, a ``DataTree`` under 1.x)
  from one ``xarray.Dataset`` per group; `groups`, `group` and `has_group` read it back.
- `summary` gives one table in both, with the 0.x column names the suite has always shown: ``mean, sd,
  hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat`` (94 % highest-density interval; 1.x's
  default is an 89 % equal-tailed one, asked for explicitly as ``ci_kind="hdi", ci_prob=0.94`` and its
  columns ``hdi94_lb``/``hdi94_ub`` renamed) and 0.x's rounding (three decimals, ESS whole, R-hat two)
  unless ``round_to`` says otherwise.
- `loo` returns `Loo` (elpd, se, p, Pareto k); `compare` a table with 1.x's column names (``elpd``,
  ``p``, ``elpd_diff``, ``weight``, ``se``, ``dse``, ``rank``).
- `ess`, `rhat`, `mcse` return an ``xarray.Dataset`` for a result or dataset (1.x returns a DataTree
  for a DataTree) and a float or array for a NumPy array.
- `psislw` takes log importance ratios (1.x's array function takes log-likelihood values, the negated
  ratios) and returns normalised smoothed log weights and k.
- `prior_sensitivity` is power-scaling sensitivity (Kallioinen et al. 2024): 0.x ``az.psens`` for the
  prior and the likelihood, 1.x ``az.psense_summary``; both as one table with priorsense's diagnosis.
- `to_netcdf` / `from_netcdf` write and read every group (netCDF4 groups through h5netcdf), the file read
  back whole into memory.
- `plot_trace`, `plot_forest`, `plot_dist` draw with matplotlib and return the figure; `plot_forest_fits`
  draws several fits' intervals side by side (the notebooks' comparisons) and returns the intervals' axes.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

import arviz as az

from .errors import InputError

ARVIZ_VERSION: str = az.__version__
ARVIZ_1: bool = int(ARVIZ_VERSION.split(".")[0]) >= 1

HDI_PROB = 0.94
# the summary's columns, in 0.x's order (the suite's tables and summary.csv under both versions)
SUMMARY_COLUMNS = ("mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
COMPARE_COLUMNS = ("rank", "elpd", "p", "elpd_diff", "weight", "se", "dse")
# priorsense's threshold on the cumulative Jensen-Shannon distance of a power-scaled posterior
SENSITIVITY_THRESHOLD = 0.05
CONFLICT = "potential prior-data conflict"
STRONG_PRIOR = "potential strong prior / weak likelihood"
PRIOR_SENSITIVE = "prior-sensitive"  # (no log-likelihood to tell the two apart)

Native = Any  # arviz.InferenceData (0.x) or xarray.DataTree (1.x)


# ---- the result ----------------------------------------------------------------------------------------
def make_attrs() -> dict:
    """ArviZ's creation attributes (created_at, arviz_version / creation_library...)."""
    if ARVIZ_1:
        return dict(az.make_attrs())
    return dict(az.data.base.make_attrs())


def dict_to_dataset(data: dict[str, np.ndarray], dims: dict[str, list[str]] | None = None,
                    skip_event_dims: bool = False) -> xr.Dataset:
    """Arrays shaped (chain, draw, ...) as a Dataset, ``chain`` and ``draw`` first, other axes named by
    `dims` (ArviZ's ``dict_to_dataset``; its name for both versions)."""
    return az.dict_to_dataset(data, dims=dims, skip_event_dims=skip_event_dims)


def from_datasets(datasets: dict[str, xr.Dataset], attrs: dict | None = None) -> Native:
    """The native result holding one group per Dataset, in the order given, `attrs` on the whole."""
    attrs = dict(attrs or {})
    if ARVIZ_1:
        tree = {"/": xr.Dataset(attrs=attrs)}
        tree.update({name: ds for name, ds in datasets.items()})
        return xr.DataTree.from_dict(tree)
    standard = {k: v for k, v in datasets.items() if k in az.data.inference_data.SUPPORTED_GROUPS_ALL}
    idata = az.InferenceData(**standard, attrs=attrs)
    extra = {k: v for k, v in datasets.items() if k not in standard}
    if extra:
        with warnings.catch_warnings():  # (0.x: "the default dims 'chain' and 'draw' will be added")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"arviz\.")
            idata.add_groups(extra)
    return idata


def groups(data: Native) -> list[str]:
    """The names of the groups, in order."""
    if isinstance(data, xr.DataTree):
        return list(data.children)
    return list(data.groups())


def has_group(data: Native, name: str) -> bool:
    return name in groups(data)


def group(data: Native, name: str) -> xr.Dataset:
    """One group as an ``xarray.Dataset``."""
    if isinstance(data, xr.DataTree):
        return data[name].to_dataset()
    return data[name]


def attrs(data: Native) -> dict:
    """The attributes of the whole result (method, engine, notes, settings)."""
    return dict(data.attrs)


def to_netcdf(data: Native, path: str, compress: bool = True) -> str:
    """Write every group to `path` (netCDF4 groups, h5netcdf); zlib on numeric variables when `compress`."""
    path = str(path)
    if not ARVIZ_1:
        return data.to_netcdf(path, compress=compress, engine="h5netcdf")
    encoding = None
    if compress:
        encoding = {f"/{name}": {var: {"zlib": True} for var, da in node.dataset.data_vars.items()
                                 if da.dtype.kind in "biufc"}
                    for name, node in data.children.items()}
    data.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


def from_netcdf(path: str) -> Native:
    """The result written by `to_netcdf` (or by ArviZ), every group read into memory."""
    if not ARVIZ_1:
        return az.from_netcdf(str(path))
    with xr.open_datatree(str(path), engine="h5netcdf") as tree:
        return tree.load().copy()


# ---- statistics ----------------------------------------------------------------------------------------
def _hdi_names(prob: float) -> tuple[str, str]:
    return f"hdi_{100 * (1 - prob) / 2:g}%", f"hdi_{100 * (1 + prob) / 2:g}%"


def _round(table: pd.DataFrame, round_to: Any) -> pd.DataFrame:
    """0.x's rounding: None -> three decimals, ESS whole, R-hat two; an int -> that many; "none" -> raw."""
    if isinstance(round_to, str) and round_to.lower() == "none":
        return table
    if round_to is not None:
        return table.round(round_to)
    return table.round({c: 0 if c.startswith("ess") else 2 if c == "r_hat" else 3 for c in table.columns})


def summary(data: Any, var_names: Any = None, *, kind: str = "all", round_to: Any = None,
            hdi_prob: float = HDI_PROB, filter_vars: str | None = None, coords: dict | None = None,
            group: str = "posterior") -> pd.DataFrame:
    """``az.summary`` as one wide table under both versions: columns `SUMMARY_COLUMNS` (for ``kind``
    "stats": mean, sd and the hdi; "diagnostics": mcse, ESS and R-hat), rows ``site[index]``."""
    if ARVIZ_1:
        table = az.summary(data, var_names=var_names, filter_vars=filter_vars, group=group, coords=coords,
                           kind=kind, ci_prob=hdi_prob, ci_kind="hdi", round_to="none")
        table = pd.DataFrame(table)
        pct = int(hdi_prob * 100)
        low, high = _hdi_names(hdi_prob)
        table = table.rename(columns={f"hdi{pct}_lb": low, f"hdi{pct}_ub": high})
        order = [c.replace("hdi_3%", low).replace("hdi_97%", high) for c in SUMMARY_COLUMNS]
        table = table[[c for c in order if c in table.columns] + [c for c in table.columns if c not in order]]
    else:
        table = az.summary(data, var_names=var_names, filter_vars=filter_vars, group=group, coords=coords,
                           kind=kind, hdi_prob=hdi_prob, round_to="none")
    return _round(table.astype(float), round_to)


def select_names(data: Native, var_names: Any, filter_vars: str | None = None, group: str = "posterior") -> list[str]:
    """The variables of `group` that `var_names` selects by ArviZ's rules (``~name``, ``filter_vars``)."""
    if isinstance(var_names, str):
        var_names = [var_names]
    selected = az.extract(data, group=group, var_names=var_names, filter_vars=filter_vars, combined=False,
                          keep_dataset=True)
    names = list(selected.data_vars)
    if var_names is not None and all(not v.startswith("~") for v in var_names) and filter_vars is None:
        names = [v for v in var_names if v in names]  # the order asked for
    return names


class Loo(NamedTuple):
    """PSIS-LOO: elpd and its standard error, the effective number of parameters, Pareto k per
    observation, and ArviZ's own object (``ELPDData``)."""

    elpd: float
    se: float
    p: float
    pareto_k: np.ndarray
    native: Any


def _joint_log_likelihood(data: Native) -> Native:
    """`data` as ArviZ's LOO reads it: a model with several observed sites (a generative classifier's x and y)
    has one pointwise log-likelihood, their sum per observation, over the axes they share (the other axes
    summed out). Unchanged when there is one site."""
    ll = group(data, "log_likelihood")
    if len(ll.data_vars) < 2:
        return data
    arrays = list(ll.data_vars.values())
    shared = [d for d in arrays[0].dims if all(d in a.dims for a in arrays)]
    joint = sum(a.sum([d for d in a.dims if d not in shared]) for a in arrays)
    return from_datasets({"posterior": group(data, "posterior"),
                          "log_likelihood": xr.Dataset({"joint": joint.transpose(*shared)})})


def constant_log_likelihood(ll: xr.DataArray) -> bool:
    """Whether a pointwise log-likelihood is the same at every draw for every observation."""
    values = np.asarray(ll.transpose("chain", "draw", ...).values, dtype=float)
    values = values.reshape(values.shape[0] * values.shape[1], -1)
    return bool(np.all(values == values[:1]))


# PSIS fits a Pareto tail to the largest ceil(min(S / 5, 3 sqrt(S))) of S draws' ratios; 1.x refuses fewer than
# 5 ("n_draws_tail must be at least 5"), 0.x only warns: the same limit under both, S >= 25
MIN_LOO_DRAWS = 25


def _check_loo_draws(ll: xr.DataArray | xr.Dataset, name: str = "") -> None:
    draws = ll.sizes["chain"] * ll.sizes["draw"]
    if draws < MIN_LOO_DRAWS:
        raise InputError("draws", f"PSIS-LOO{' of ' + name if name else ''} needs at least {MIN_LOO_DRAWS} draws "
                                  f"(chains x draws) to fit its Pareto tail; the result has {draws}")


def loo(data: Native, var_name: str | None = None) -> Loo:
    """``az.loo`` (pointwise), its numbers by one name under both versions; with several observed sites
    and no `var_name`, of their joint log-likelihood per observation.

    Raises `InputError("draws", ...)` for fewer than `MIN_LOO_DRAWS` draws (where the log-likelihood varies)."""
    if var_name is None:
        data = _joint_log_likelihood(data)
    ll = group(data, "log_likelihood")
    ll = ll[var_name] if var_name is not None else next(iter(ll.data_vars.values()))
    if constant_log_likelihood(ll):
        # every draw predicts each observation alike (draws by exact enumeration of a discrete model): the
        # leave-one-out predictive is the likelihood itself, no weights to smooth (1.x's PSIS refuses them)
        pointwise = ll.isel(chain=0, draw=0)
        n = pointwise.size
        return Loo(float(pointwise.sum()), 0.0 if n < 2 else float(np.sqrt(n * pointwise.var())), 0.0,
                   np.full(n, -np.inf), None)
    _check_loo_draws(ll)
    result = az.loo(data, pointwise=True, var_name=var_name)
    if ARVIZ_1:
        return Loo(float(result.elpd), float(result.se), float(result.p), np.asarray(result.pareto_k), result)
    return Loo(float(result["elpd_loo"]), float(result["se"]), float(result["p_loo"]),
               np.asarray(result["pareto_k"]), result)


def compare(fits: dict[str, Native]) -> pd.DataFrame:
    """``az.compare`` (PSIS-LOO, stacking weights), columns `COMPARE_COLUMNS` (1.x's names) under both.

    Raises `InputError("draws", ...)` naming a fit of fewer than `MIN_LOO_DRAWS` draws."""
    fits = {name: _joint_log_likelihood(d) for name, d in fits.items()}
    for name, d in fits.items():
        _check_loo_draws(group(d, "log_likelihood"), name)
    table = pd.DataFrame(az.compare(fits, round_to="none") if ARVIZ_1 else az.compare(fits))
    if not ARVIZ_1:
        table = table.rename(columns={"elpd_loo": "elpd", "p_loo": "p"})
    return table[[c for c in COMPARE_COLUMNS if c in table.columns]]


def _statistic(fn: Any, data: Any, **kwargs) -> Any:
    if isinstance(data, np.ndarray) or np.isscalar(data):
        value = fn(np.asarray(data), **kwargs)
        value = np.asarray(value)
        return float(value) if value.size == 1 else value
    value = fn(data, **kwargs)
    if isinstance(value, xr.DataTree):
        value = value.to_dataset()
    return value


def ess(data: Any, var_names: Any = None, method: str = "bulk") -> Any:
    """Effective sample size (``az.ess``) of a result, a Dataset or an array (chain, draw)."""
    kwargs = {"method": method} if var_names is None else {"method": method, "var_names": var_names}
    return _statistic(az.ess, data, **kwargs)


def rhat(data: Any, var_names: Any = None) -> Any:
    """Rank-normalised split R-hat (``az.rhat``)."""
    return _statistic(az.rhat, data, **({} if var_names is None else {"var_names": var_names}))


def mcse(data: Any, var_names: Any = None, method: str = "mean") -> Any:
    """Monte-Carlo standard error (``az.mcse``) of the mean (``method="mean"``) or the sd (``"sd"``)."""
    kwargs = {"method": method} if var_names is None else {"method": method, "var_names": var_names}
    try:
        return _statistic(az.mcse, data, **kwargs)
    except TypeError:  # ArviZ 0.23's numba path of method="sd" fails on numpy 2: its plain path instead
        if ARVIZ_1:
            raise
        from arviz.utils import Numba

        numba = Numba.numba_flag
        Numba.disable_numba()
        try:
            return _statistic(az.mcse, data, **kwargs)
        finally:
            if numba:
                Numba.enable_numba()


def psislw(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance sampling of one vector of log ratios: the smoothed log weights,
    normalised to sum to one, and Pareto k."""
    ratios = np.asarray(log_ratios, dtype=np.float64)
    if ARVIZ_1:
        # (arviz-stats smooths log-likelihood values: it takes the ratios negated, as its lfo_cv does)
        weights, k = xr.DataArray(-ratios, dims=["draw"]).azstats.psislw(dim="draw", r_eff=1.0)
        weights = np.asarray(weights, dtype=float)
        finite = np.isfinite(weights)
        if finite.any():
            weights = weights - np.logaddexp.reduce(weights[finite])
        return weights, float(k)
    smoothed, k = az.psislw(ratios)
    return np.asarray(smoothed, dtype=float), float(k)


def _labels(ds: xr.Dataset) -> pd.Series:
    """A Dataset of statistics (no sample dims) as one value per row ``name[index]`` (the summary's)."""
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name or "x")
    rows = {}
    for name, da in ds.data_vars.items():
        if not da.dims:
            rows[name] = float(da)
            continue
        for index in np.ndindex(*da.shape):
            labels = [str(da[d].values[i]) if d in da.coords else str(i) for d, i in zip(da.dims, index)]
            rows[f"{name}[{', '.join(labels)}]"] = float(da.values[index])
    return pd.Series(rows, dtype=float)


def _diagnosis(prior: float, likelihood: float, threshold: float) -> str:
    if np.isnan(likelihood):
        return PRIOR_SENSITIVE if prior >= threshold else "✓"
    if prior >= threshold and likelihood >= threshold:
        return CONFLICT
    if prior > threshold > likelihood:
        return STRONG_PRIOR
    return "✓"


@contextlib.contextmanager
def _quiet_stats():
    """PSIS's Pareto-k warnings and 1.x's "We detected potential issues" log line: the table says it."""
    log = logging.getLogger("arviz_stats")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"arviz(_stats)?\.")
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            yield
    finally:
        log.setLevel(level)


def prior_sensitivity(data: Native, var_names: Any = None,
                      threshold: float = SENSITIVITY_THRESHOLD) -> pd.DataFrame:
    """Power-scaling sensitivity of each parameter: the cumulative Jensen-Shannon distance of its posterior
    when the prior (column ``prior``) and the likelihood (``likelihood``; NaN without a log_likelihood
    group) are scaled by a power near 1, and priorsense's ``diagnosis``: "potential prior-data conflict"
    (both at least `threshold`), "potential strong prior / weak likelihood" (the prior alone above it) or
    "✓". Needs a ``log_prior`` group."""
    if not has_group(data, "log_prior"):
        raise ValueError("prior sensitivity needs a log_prior group (MCMC fits have one)")
    components = ["prior"] + (["likelihood"] if has_group(data, "log_likelihood") else [])
    columns = {}
    with _quiet_stats():
        for component in components:
            if _constant(group(data, "log_prior" if component == "prior" else "log_likelihood")):
                continue  # a flat prior (Beta(1, 1)): power-scaling it changes nothing; PSIS cannot smooth it
            if ARVIZ_1:
                columns[component] = _labels(_as_dataset(az.psense(data, var_names=var_names, group=component)))
            else:
                columns[component] = _labels(az.psens(data, component=component, var_names=var_names))
    if not columns:
        names = select_names(data, var_names)
        columns["prior"] = _labels(_as_dataset(az.extract(data, var_names=names, keep_dataset=True,
                                                          combined=False).isel(chain=0, draw=0)))
    table = pd.DataFrame(columns)
    for component in ("prior", "likelihood"):
        if component not in columns:
            table[component] = 0.0 if component in components else np.nan
    table = table[["prior", "likelihood"]]
    table["diagnosis"] = [_diagnosis(p, lik, threshold) for p, lik in zip(table["prior"], table["likelihood"])]
    return table


def _constant(ds: xr.Dataset) -> bool:
    """Whether the summed log density of a group is the same at every draw."""
    total = sum(da.sum([d for d in da.dims if d not in ("chain", "draw")]) for da in ds.data_vars.values())
    values = np.asarray(total, dtype=float)
    return bool(np.all(values == values.flat[0]))


def _as_dataset(value: Any) -> xr.Dataset:
    return value.to_dataset() if isinstance(value, xr.DataTree) else value


def sensitive_parameters(table: pd.DataFrame) -> list[str]:
    """The rows of a `prior_sensitivity` table whose diagnosis is not "✓"."""
    return [str(name) for name, d in table["diagnosis"].items() if d != "✓"]


def ecdf_band(n: int, points: np.ndarray, prob: float = 0.95, n_simulations: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's simultaneous `prob` band (lower, upper) for the ECDF of `n` uniform values at `points`: 0.x
    ``ecdf_confidence_band(method="optimized")``, 1.x the simulated band of ``plot_ecdf_pit`` (seeded, as
    ArviZ seeds it)."""
    points = np.asarray(points, dtype=float)
    if ARVIZ_1:
        from arviz_stats.ecdf_utils import get_pointwise_confidence_band, simulate_confidence_bands

        pointwise = simulate_confidence_bands(n, 1, points, prob, n_simulations, np.random.default_rng(214))
        lower, upper = get_pointwise_confidence_band(pointwise, n, points)
    else:
        from arviz.stats.ecdf_utils import ecdf_confidence_band

        lower, upper = ecdf_confidence_band(n, points, points, prob=prob, method="optimized")
    return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


# ---- plots ---------------------------------------------------------------------------------------------
def _figure(result: Any):
    """The matplotlib figure of a plot: 1.x's PlotCollection, or 0.x's axes."""
    if hasattr(result, "viz"):
        return result.viz["figure"].item()
    return np.ravel(np.asarray(result, dtype=object))[0].get_figure()


def _plot(name_1: str, name_0: str, data: Native, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"More chains \(\d+\) than draws", category=UserWarning)
        if ARVIZ_1:
            return _figure(getattr(az, name_1)(data, backend="matplotlib", **kwargs))
        return _figure(getattr(az, name_0)(data, show=False, **kwargs))


def plot_trace(data: Native, var_names: Any = None, coords: dict | None = None):
    """The marginal and the trace of each variable (1.x ``az.plot_trace_dist``, 0.x ``az.plot_trace``);
    returns the matplotlib figure."""
    return _plot("plot_trace_dist", "plot_trace", data, var_names=var_names, coords=coords)


def plot_forest(data: Native, var_names: Any = None, coords: dict | None = None):
    """``az.plot_forest`` (credible intervals of every variable); returns the matplotlib figure."""
    return _plot("plot_forest", "plot_forest", data, var_names=var_names, coords=coords)


def plot_dist(data: Native, var_names: Any = None, coords: dict | None = None):
    """The marginal posterior of each variable (1.x ``az.plot_dist``, 0.x ``az.plot_posterior``)."""
    return _plot("plot_dist", "plot_posterior", data, var_names=var_names, coords=coords)


def plot_forest_fits(fits: dict[str, Native], var_names: Any = None, coords: dict | None = None,
                     hdi_prob: float = HDI_PROB, figsize: tuple[float, float] | None = None):
    """Several fits' highest-density intervals side by side, one colour per fit and a legend naming them:
    1.x ``az.plot_forest({name: DataTree, ...}, combined=True, ci_kind="hdi", ci_probs=(0.5, hdi_prob))``,
    0.x ``az.plot_forest([idata, ...], model_names=[name, ...], combined=True, hdi_prob=hdi_prob)``.

    The fits may differ in their numbers of chains and draws (four NUTS chains, one chain of guide draws, a
    single point estimate, which is drawn as a point). Returns the matplotlib axes holding the intervals (x:
    the values; its figure is ``ax.figure``), for reference lines and a title."""
    names = list(fits)
    if not ARVIZ_1:
        axes = az.plot_forest([fits[name] for name in names], model_names=names, var_names=var_names,
                              coords=coords, combined=True, hdi_prob=hdi_prob, figsize=figsize, show=False)
        return np.ravel(np.asarray(axes, dtype=object))[0]
    # arviz-plots stacks the fits along a "model" dimension: fits of other sizes are aligned here on the
    # union of their chains and draws, the padding NaN, which the interval and the point estimate skip
    posteriors = xr.align(*(group(fits[name], "posterior") for name in names), join="outer")
    trees = {name: xr.DataTree.from_dict({"posterior": ds}) for name, ds in zip(names, posteriors)}
    skip = {"skipna": True}
    pc = az.plot_forest(trees, var_names=var_names, coords=coords, combined=True, ci_kind="hdi",
                        ci_probs=(0.5, hdi_prob) if hdi_prob > 0.5 else (hdi_prob / 2, hdi_prob),
                        stats={"trunk": skip, "twig": skip, "point_estimate": skip}, backend="matplotlib",
                        **({"figure_kwargs": {"figsize": figsize}} if figsize else {}))
    ax = pc.viz["plot"].sel(column="forest").item()
    twigs = next(iter(pc.viz["twig"].to_dataset().data_vars.values()))  # one line per fit (and index)
    ax.legend([twigs.sel(model=name).values.flat[0] for name in names], names, fontsize=8, frameon=False)
    return ax


__all__ = ["ARVIZ_1", "ARVIZ_VERSION", "SUMMARY_COLUMNS", "COMPARE_COLUMNS", "SENSITIVITY_THRESHOLD", "MIN_LOO_DRAWS", "Loo",
           "make_attrs", "dict_to_dataset", "from_datasets", "groups", "has_group", "group", "attrs",
           "to_netcdf", "from_netcdf", "summary", "select_names", "loo", "compare", "ess", "rhat", "mcse",
           "psislw", "ecdf_band", "prior_sensitivity", "sensitive_parameters", "plot_trace", "plot_forest", "plot_dist",
           "plot_forest_fits"]
