"""ArviZ on the result of every method for every catalogue model, under whichever ArviZ is installed: 0.x
(``InferenceData``; Python 3.11 here) or 1.x (``xarray.DataTree``; Python 3.12+, `make test-arviz1`).

Per fit: the native result and its groups, every dimension named, `summary` (the suite's columns under both
versions), ``ess`` and ``rhat``, PSIS-LOO where there is a log-likelihood, power-scaling prior sensitivity
on MCMC fits (the ``log_prior`` group), two plots (trace and forest, matplotlib Agg), and the netCDF round
trip, exact, read back by ArviZ, by ``xarray.open_datatree`` and group by group by ``xarray.open_dataset``.
Per model: ``compare`` of its fits that have a log-likelihood. Runs are short: the numbers are not judged
here (the oracle tests do that), only that ArviZ reads every result. Fits are cached per process.
"""

from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import ppl_models  # noqa: E402
from conftest import PLACEHOLDER_DIM, small_data  # noqa: E402
from inference import arviz_compat as azc  # noqa: E402
from inference import fit  # noqa: E402

FIT = {"nuts": {"num_chains": 2, "num_samples": 100, "num_warmup": 100},
       "hmc": {"num_chains": 2, "num_samples": 100, "num_warmup": 60, "trajectory_length": 0.5},
       "svi": {"num_steps": 30, "num_samples": 40},
       "map": {"num_steps": 20}, "mle": {"num_steps": 20}}
CASES = [(name, method) for name in ppl_models.names() for method in ppl_models.get(name).engines]


@functools.lru_cache(maxsize=None)
def posterior(name: str, method: str):
    options = dict(FIT[method])
    if (name, method) == ("gmm", "hmc"):
        # 10 warm-up draws from random starts leave a step size near 1e-4: a trajectory of 0.5 took 7,000 leapfrog
        # steps a transition (88 s); this one about 150. ArviZ reads the result the same way. 2 x 15 draws: LOO
        # needs 25 (azc.MIN_LOO_DRAWS)
        options.update(num_warmup=10, num_samples=15, trajectory_length=0.01)
    elif name in ("gmm", "factor_analysis", "ppca") and method == "nuts":  # the costly ones: ArviZ needs few draws
        options.update(num_warmup=40, num_samples=40)
    return fit(name, data=small_data(name), method=method, seed=0, progress=False, pointwise=True, **options)


def global_sites(post) -> list[str]:
    local = set(post.local_sites())
    return [k for k in post.samples if k not in local]


def plotted(post, idata) -> tuple[list[str], dict]:
    """Up to two continuous sites to plot, and coords keeping the first two values of each of their axes."""
    structure = post.structure
    sites = [k for k in global_sites(post) if k in structure.continuous] or \
            [k for k in post.samples if k in structure.continuous] or list(post.samples)
    sites = sites[:2]
    posterior_ds = azc.group(idata, "posterior")
    dims = {d for k in sites for d in posterior_ds[k].dims if d not in ("chain", "draw")}
    return sites, {d: posterior_ds[d].values[:2].tolist() for d in dims}


@pytest.mark.parametrize("name,method", CASES)
def test_arviz_reads_every_result(name, method, tmp_path):
    post = posterior(name, method)
    idata = post.to_arviz()

    # the installed ArviZ's own structure, with the groups of today
    assert type(idata).__name__ == ("DataTree" if azc.ARVIZ_1 else "InferenceData")
    groups = azc.groups(idata)
    assert {"posterior", "observed_data", "log_likelihood", "posterior_predictive"} <= set(groups), groups
    mcmc = method in ("nuts", "hmc") and not post.exact
    if mcmc:
        assert {"sample_stats", "log_prior"} <= set(groups), groups
    if method in ("svi", "map", "mle") and not post.exact:
        assert "loss" in groups
    if post.approximation is not None:
        assert "approximation" in groups
    for g in groups:
        ds = azc.group(idata, g)
        unnamed = [f"{g}/{v}: {d}" for v, a in ds.data_vars.items() for d in a.dims if PLACEHOLDER_DIM.search(d)]
        assert not unnamed, unnamed

    # summary: the suite's table and ArviZ's own on the native result
    shown = global_sites(post)
    if shown:
        table = post.summary(shown)
        assert len(table) and set(table.columns) <= set(azc.SUMMARY_COLUMNS)
        raw = azc.summary(idata, var_names=shown, kind="stats" if method in ("map", "mle") else "all")
        assert {"mean", "hdi_3%", "hdi_97%"} <= set(raw.columns)
        assert np.isfinite(raw["mean"].to_numpy(dtype=float)).all()

    # ess and rhat: one value per variable of the posterior
    ess, rhat = azc.ess(idata), azc.rhat(idata)
    assert set(ess.data_vars) == set(rhat.data_vars) == set(azc.group(idata, "posterior").data_vars)
    if mcmc:
        for site in shown:
            if site in post.structure.continuous:
                assert np.isfinite(ess[site].values).any() and np.isfinite(rhat[site].values).any(), site

    # PSIS-LOO where there is more than one draw
    if post.num_chains * post.num_draws > 1:
        loo = azc.loo(idata)
        assert np.isfinite(loo.elpd) and loo.pareto_k.size > 0

    # power-scaling prior sensitivity: every MCMC fit with a continuous parameter has a log_prior group
    if mcmc:
        table = post.prior_sensitivity()
        assert table is not None and list(table.columns) == ["prior", "likelihood", "diagnosis"]
        assert len(table) and table["prior"].notna().all()
        assert post.sensitivity_note(table).startswith("prior sensitivity")
    else:
        assert post.prior_sensitivity() is None

    # two plots of the result
    sites, coords = plotted(post, idata)
    for draw in (azc.plot_trace, azc.plot_forest):
        figure = draw(idata, var_names=sites, coords=coords)
        assert figure.get_axes()
        plt.close(figure)

    # netCDF: every group back exactly, by ArviZ and by plain xarray
    path = post.to_netcdf(tmp_path / "posterior.nc")
    back = azc.from_netcdf(path)
    assert azc.groups(back) == groups
    tree = xr.open_datatree(path, engine="h5netcdf")
    try:
        assert sorted(tree.children) == sorted(groups)
        for g in groups:
            want = azc.group(idata, g)
            xr.testing.assert_identical(azc.group(back, g), want)
            xr.testing.assert_identical(tree[g].to_dataset().load(), want)
            with xr.open_dataset(path, group=g, engine="h5netcdf") as one:
                xr.testing.assert_identical(one.load(), want)
    finally:
        tree.close()


# bayes_net's every fit is exact enumeration: its log-likelihood is the same at every draw, nothing to compare
COMPARED = [name for name in ppl_models.names() if name != "bayes_net"]


@pytest.mark.parametrize("name", COMPARED)
def test_compare_fits_of_one_model(name):
    """``compare`` of the fits of one model that have a log-likelihood and more than one draw."""
    fits = {}
    for method in ppl_models.get(name).engines:
        post = posterior(name, method)
        idata = post.to_arviz()
        if post.num_chains * post.num_draws > 1 and azc.has_group(idata, "log_likelihood"):
            ll = next(iter(azc.group(idata, "log_likelihood").data_vars.values()))
            if not azc.constant_log_likelihood(ll):  # (exact draws of a discrete model: nothing to compare)
                fits[method] = idata
    assert fits, f"no fit of {name} has a log-likelihood that varies between draws"
    if len(fits) == 1:  # (one method only: the fit against itself)
        fits = {**fits, f"{next(iter(fits))} again": next(iter(fits.values()))}
    table = azc.compare(fits)
    assert set(table.index) == set(fits)
    assert list(table.columns) == list(azc.COMPARE_COLUMNS)
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)


def test_loo_of_too_few_draws_is_one_input_error_under_both_versions():
    """20 draws: 1.x's PSIS refuses its 4-draw tail with a ValueError, 0.x only warns; the suite says why."""
    from inference import InputError

    rng = np.random.default_rng(0)
    ll = azc.dict_to_dataset({"y": rng.normal(-1.0, 0.1, (2, 10, 5))}, dims={"y": ["N"]})
    few = azc.from_datasets({"posterior": azc.dict_to_dataset({"p": rng.random((2, 10))}), "log_likelihood": ll})
    with pytest.raises(InputError, match=r"^draws: PSIS-LOO needs at least 25 draws .* has 20$"):
        azc.loo(few)
    with pytest.raises(InputError, match=r"^draws: PSIS-LOO of few needs at least 25"):
        azc.compare({"few": few, "again": few})
    ll = azc.dict_to_dataset({"y": rng.normal(-1.0, 0.1, (2, 15, 5))}, dims={"y": ["N"]})
    enough = azc.from_datasets({"posterior": azc.dict_to_dataset({"p": rng.random((2, 15))}), "log_likelihood": ll})
    assert np.isfinite(azc.loo(enough).elpd)
