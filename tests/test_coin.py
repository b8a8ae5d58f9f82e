"""The coin end to end against its exact posterior: 7 heads, 3 tails, Beta(2, 2) prior -> Beta(9, 5)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import stats

import ppl_models
from inference import fit
from ppl.checks import mcse_sd
from ppl_models.coin import exact_posterior

FLIPS = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
DATA = {"flips": FLIPS, "alpha": 2.0, "beta": 2.0}
EXACT = stats.beta(9, 5)


def test_exact_posterior_is_conjugate_update():
    post = exact_posterior(FLIPS, 2.0, 2.0)
    assert post.args == (9.0, 5.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_mcmc_matches_beta_9_5_within_4_mcse(method):
    post = fit("coin", DATA, method=method, seed=1, num_chains=2, num_samples=1000, num_warmup=500, progress=False)
    idata = post.to_arviz(prior=False, predictive=False)
    mean_mcse = float(az.mcse(idata, var_names=["p"], method="mean")["p"])
    sd_mcse = mcse_sd(post.samples["p"])  # ArviZ's, also where numba is installed (see ppl.checks)
    draws = post.samples["p"]
    assert abs(draws.mean() - EXACT.mean()) < 4 * mean_mcse
    assert abs(draws.std() - EXACT.std()) < 4 * sd_mcse
    assert post.problems() == []
    # the run's diagnostics are real: some transitions accept less than 1, steps were taken
    assert post.sample_stats["acceptance_rate"].shape == (2, 1000)
    assert 0.5 < post.sample_stats["acceptance_rate"].mean() < 1.0
    assert (post.sample_stats["n_steps"] >= 1).all()


def test_map_is_the_beta_mode():
    post = fit("coin", DATA, method="map", progress=False)
    assert post.samples["p"].shape == (1, 1)
    assert post.samples["p"].item() == pytest.approx(8 / 12, abs=1e-5)


def test_mle_is_the_frequency():
    post = fit("coin", DATA, method="mle", progress=False)
    assert post.samples["p"].item() == pytest.approx(0.7, abs=1e-5)


def test_map_and_mle_differ_only_in_the_prior():
    # with a flat Beta(1, 1) prior the mode is the frequency: MAP = MLE
    flat = {**DATA, "alpha": 1.0, "beta": 1.0}
    assert fit("coin", flat, method="map", progress=False).samples["p"].item() == pytest.approx(0.7, abs=1e-5)


def test_svi_normal_guide_mean_within_0_02():
    post = fit("coin", DATA, method="svi", seed=0, num_steps=2000, lr=0.02, num_samples=2000, progress=False)
    assert abs(post.samples["p"].mean() - EXACT.mean()) < 0.02
    assert post.loss is not None and post.loss[-100:].mean() < post.loss[:100].mean()  # the ELBO improved


def test_course_example_three_heads_in_three_flips():
    # COURSE.md: MLE says p = 1, MAP under Beta(2, 2) says 0.8
    data = {"flips": [1, 1, 1], "alpha": 2.0, "beta": 2.0}
    assert fit("coin", data, method="map", progress=False).samples["p"].item() == pytest.approx(0.8, abs=1e-5)
    assert fit("coin", data, method="mle", progress=False).samples["p"].item() == pytest.approx(1.0, abs=1e-3)


def test_default_data_and_spec():
    spec = ppl_models.get("coin")
    data = spec.default_data(seed=0)
    assert set(data) == {"flips", "alpha", "beta"}
    assert np.isin(data["flips"], [0, 1]).all() and len(data["flips"]) == 20
    assert spec.default_data(seed=0)["flips"].tolist() == data["flips"].tolist()
    assert spec.engines[0] == "nuts" and set(spec.engines) == {"nuts", "hmc", "svi", "map", "mle"}
