"""Big data (issue 19, defect 10): the per-observation groups can be left out, and are by default above a size.

A 1e6-row regression spent most of its 16 minutes, its 5 GB and its 1.6 GB file on the pointwise
log-likelihood and predictive (one value per draw and row). These tests pin the `pointwise` setting of
`fit` / `Posterior.to_arviz` (the "auto" limit is shrunk so the models stay tiny), that the other groups
are still written and readable, that `summary()` never evaluates the model, and that the chunked,
vectorised evaluation gives the values of Pyro's own trace, draw by draw (the oracle).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import inference.posterior as posterior_module
import inference.predictive as predictive_module
from inference import InputError, fit
from inference import arviz_compat as azc

POINTWISE = ("log_likelihood", "posterior_predictive", "prior_predictive")
NUTS = dict(method="nuts", num_chains=2, num_samples=15, num_warmup=15, progress=False)


def _regression(n: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return {"X": X, "y": X @ np.array([1.0, -0.5]) + 0.3 + 0.5 * rng.normal(size=n)}


@pytest.fixture
def tiny_limit(monkeypatch):
    """`pointwise="auto"` switches off above 100 values (2 chains x 15 draws x 12 rows = 360 here)."""
    monkeypatch.setattr(posterior_module, "POINTWISE_LIMIT", 100)


def test_auto_leaves_the_pointwise_groups_out_above_the_limit_and_says_so(tiny_limit):
    post = fit("linear_regression", _regression(), **NUTS)
    note = ("pointwise log-likelihood and predictive left out (30 draws x 12 observations); "
            "pass pointwise=True to compute them (needed for az.loo)")
    assert note in post.notes
    assert f"note: {note}" in post.report()
    idata = post.to_arviz()
    assert not set(POINTWISE) & set(azc.groups(idata))
    assert {"posterior", "sample_stats", "observed_data", "prior"} <= set(azc.groups(idata))
    assert set(idata.prior.data_vars) == {"coef", "intercept", "sigma"}
    assert note in idata.attrs["notes"]


def test_auto_keeps_them_at_or_below_the_limit(monkeypatch):
    monkeypatch.setattr(posterior_module, "POINTWISE_LIMIT", 360)  # exactly 30 draws x 12 rows
    post = fit("linear_regression", _regression(), **NUTS)
    assert not any("left out" in n for n in post.notes)
    idata = post.to_arviz()
    assert set(POINTWISE) <= set(azc.groups(idata))
    assert idata.log_likelihood["y"].shape == (2, 15, 12)
    assert np.isfinite(azc.loo(idata).elpd)


def test_pointwise_true_forces_the_groups_above_the_limit(tiny_limit):
    post = fit("linear_regression", _regression(), pointwise=True, **NUTS)
    assert post.pointwise is True and not any("left out" in n for n in post.notes)
    idata = post.to_arviz()
    assert idata.log_likelihood["y"].shape == (2, 15, 12)
    assert idata.posterior_predictive["y"].shape == (2, 15, 12)
    assert idata.prior_predictive["y"].shape[-1] == 12
    assert "left out" not in idata.attrs["notes"]


def test_pointwise_false_leaves_them_out_of_a_small_run_too():
    post = fit("coin", {"flips": [1, 0, 1, 1]}, pointwise=False, **NUTS)
    idata = post.to_arviz()
    assert not set(POINTWISE) & set(azc.groups(idata))
    assert np.array_equal(idata.observed_data["flips"].values, [1, 0, 1, 1])
    assert "pointwise=False" in idata.attrs["notes"]
    assert not any("left out" in n for n in post.notes)  # asked for: nothing to warn about in the report


def test_to_arviz_overrides_the_setting_per_call(tiny_limit):
    post = fit("linear_regression", _regression(), **NUTS)
    full = post.to_arviz(pointwise=True)
    assert full.log_likelihood["y"].shape == (2, 15, 12) and "left out" not in full.attrs["notes"]
    assert "log_likelihood" not in azc.groups(post.to_arviz())  # the cached full form is not handed back
    on = fit("coin", {"flips": [1, 0, 1, 1]}, pointwise=True, **NUTS)
    assert "log_likelihood" not in azc.groups(on.to_arviz(pointwise=False))
    assert "log_likelihood" in azc.groups(on.to_arviz())


def test_the_remaining_groups_are_written_and_read_back(tiny_limit, tmp_path):
    post = fit("linear_regression", _regression(), **NUTS)
    path = post.to_netcdf(tmp_path / "posterior.nc")
    back = az.from_netcdf(path)
    assert {"posterior", "sample_stats", "observed_data"} <= set(azc.groups(back))
    assert not set(POINTWISE) & set(azc.groups(back))
    assert np.allclose(back.posterior["coef"].values, post.samples["coef"])
    assert np.allclose(back.observed_data["y"].values, _regression()["y"])
    assert back.sample_stats["diverging"].shape == (2, 15)
    summary = az.summary(back, var_names=["coef", "intercept", "sigma"])
    assert np.isfinite(summary["mean"]).all()
    with_pointwise = az.from_netcdf(post.to_netcdf(tmp_path / "full.nc", pointwise=True))
    assert with_pointwise.log_likelihood["y"].shape == (2, 15, 12)


def test_summary_and_problems_never_evaluate_the_model(monkeypatch):
    post = fit("linear_regression", _regression(), **NUTS)

    def refuse(*args, **kwargs):
        raise AssertionError("the model was evaluated")

    for name in ("log_likelihood", "predictive", "prior"):
        monkeypatch.setattr(predictive_module, name, refuse)
    assert list(post.summary().index) == ["coef[0]", "coef[1]", "intercept", "sigma"]
    assert isinstance(post.problems(), list)
    assert "linear_regression by nuts" in post.report()


def test_a_bad_pointwise_setting_is_refused_before_any_work():
    with pytest.raises(InputError, match=r'pointwise: must be "auto", True or False, got \'yes\'') as err:
        fit("coin", pointwise="yes", **NUTS)
    assert err.value.field == "pointwise"
    with pytest.raises(InputError, match="pointwise"):
        fit("coin", pointwise=1, **NUTS)


def _per_draw_log_lik(model, data: dict, samples: dict, site: str) -> np.ndarray:
    """The oracle: Pyro's own trace of the model conditioned on one draw at a time."""
    chains, draws = next(iter(samples.values())).shape[:2]
    out = []
    for c in range(chains):
        for d in range(draws):
            values = {k: torch.as_tensor(v[c, d]) for k, v in samples.items()}
            trace = poutine.trace(poutine.condition(model, values)).get_trace(**data)
            node = trace.nodes[site]
            out.append(node["fn"].log_prob(node["value"]).detach().numpy())
    return np.stack(out).reshape((chains, draws) + out[0].shape)


@pytest.mark.parametrize("chunk", [None, 7])
def test_pointwise_log_likelihood_equals_pyros_trace_draw_by_draw(monkeypatch, chunk):
    """Registered model (vectorised over draws); with a chunk of 7 elements every draw is its own chunk."""
    if chunk is not None:
        monkeypatch.setattr(predictive_module, "_CHUNK_ELEMENTS", chunk)
    import ppl_models

    data = _regression(n=9, seed=3)
    post = fit("linear_regression", data, pointwise=True, **NUTS)
    idata = post.to_arviz()
    oracle = _per_draw_log_lik(ppl_models.get("linear_regression").model, post.data, post.samples, "y")
    assert idata.log_likelihood["y"].shape == oracle.shape == (2, 15, 9)
    np.testing.assert_allclose(idata.log_likelihood["y"].values, oracle, rtol=1e-5, atol=1e-5)
    assert idata.posterior_predictive["y"].shape == (2, 15, 9)


def test_pointwise_log_likelihood_of_a_model_that_does_not_broadcast(monkeypatch):
    """A custom model written draw by draw (``.item()``) runs once per draw: same values as the oracle."""
    monkeypatch.setattr(predictive_module, "_CHUNK_ELEMENTS", 10)

    def scalar_mean(y=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("N", len(y)):
            pyro.sample("y", dist.Normal(float(mu.item()), scale), obs=y)

    data = {"y": torch.tensor([0.3, -1.2, 2.0, 0.7])}
    post = fit(scalar_mean, data, method="svi", num_steps=20, num_samples=10, pointwise=True, progress=False)
    assert post.samples["mu"].shape == (1, 10)
    idata = post.to_arviz(prior=False)
    oracle = _per_draw_log_lik(scalar_mean, post.data, post.samples, "y")
    np.testing.assert_allclose(idata.log_likelihood["y"].values, oracle, rtol=1e-5, atol=1e-5)
