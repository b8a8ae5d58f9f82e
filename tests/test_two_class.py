"""The generative two-class classifier against Bayes' rule by hand, scikit-learn's GaussianNB, the
closed-form MLE and the exact Beta posterior of the class prior."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pytest
from sklearn.naive_bayes import GaussianNB

import ppl_models
from inference import fit
from ppl_models import DataError
from ppl_models.two_class import class_posterior, mle, rho_posterior, two_class


def _normal_pdf(x, mu, sigma):
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))



def test_class_posterior_is_bayes_rule_by_hand():
    rho, mu, sigma = 0.3, [0.0, 2.0], [1.0, 0.5]
    xs = [-1.0, 0.0, 1.0, 1.5, 3.0]
    got = class_posterior(xs, rho, mu, sigma)
    for x, p in zip(xs, got):
        joint_1 = rho * _normal_pdf(x, mu[1], sigma[1])
        joint_0 = (1 - rho) * _normal_pdf(x, mu[0], sigma[0])
        assert p == pytest.approx(joint_1 / (joint_1 + joint_0), rel=1e-12)
    # a scalar x gives a scalar; equal classes meet halfway
    assert np.shape(class_posterior(1.0, 0.5, [0.0, 2.0], [1.0, 1.0])) == ()
    assert float(class_posterior(1.0, 0.5, [0.0, 2.0], [1.0, 1.0])) == pytest.approx(0.5)


def test_class_posterior_over_draws_and_in_the_tails():
    rho = np.array([0.2, 0.5, 0.9])
    mu = np.array([[0.0, 1.0], [0.0, 2.0], [-1.0, 1.0]])
    sigma = np.ones((3, 2))
    x = np.array([-0.5, 0.5, 4.0])
    got = class_posterior(x, rho, mu, sigma)
    assert got.shape == (3, 3)
    for s in range(3):
        np.testing.assert_allclose(got[s], class_posterior(x, rho[s], mu[s], sigma[s]), rtol=1e-12)
    # far in the tails the densities underflow; the log-space rule still gives 0 or 1, not NaN
    tails = class_posterior([-1e3, 1e3], 0.5, [0.0, 1.0], [1.0, 1.0])
    assert np.isfinite(tails).all() and tails[0] == pytest.approx(0.0, abs=1e-12) and tails[1] == 1.0
    # with unequal spreads the wider class wins both tails (the log-odds are quadratic in x)
    assert class_posterior([-1e3, 1e3], 0.5, [0.0, 1.0], [1.0, 2.0]).tolist() == [1.0, 1.0]


def test_mle_fit_is_closed_form_and_matches_gaussian_naive_bayes(float64):
    data = ppl_models.get("two_class").default_data(seed=0)
    post = fit("two_class", data, method="mle", progress=False)
    exact = mle(data["x"], data["y"])
    for site in ("rho", "mu", "sigma"):
        np.testing.assert_allclose(post.samples[site][0, 0], exact[site], rtol=1e-6)
    # GaussianNB with no variance smoothing is the same classifier: class frequency, class means and variances
    nb = GaussianNB(var_smoothing=0.0).fit(data["x"][:, None].astype(float), data["y"])
    grid = np.linspace(-4, 5, 19)
    est = {k: v[0, 0] for k, v in post.samples.items()}
    np.testing.assert_allclose(class_posterior(grid, est["rho"], est["mu"], est["sigma"]),
                               nb.predict_proba(grid[:, None])[:, 1], atol=1e-6)


def test_map_rho_is_the_beta_mode(float64):
    data = {**ppl_models.get("two_class").default_data(seed=0), "alpha": 3.0, "beta": 2.0}
    post = fit("two_class", data, method="map", progress=False)
    n1 = data["y"].sum()
    n = len(data["y"])
    assert post.samples["rho"][0, 0] == pytest.approx((3.0 + n1 - 1) / (5.0 + n - 2), rel=1e-6)


@pytest.mark.slow
def test_nuts_rho_matches_exact_beta_posterior():
    data = {**ppl_models.get("two_class").default_data(seed=0), "alpha": 2.0, "beta": 2.0}
    # 4 x 1000 draws: with a few hundred, rank-normalised R-hat wanders past 1.01 by chance alone
    post = fit("two_class", data, method="nuts", num_chains=4, num_samples=1000, num_warmup=500, progress=False)
    assert post.problems() == []
    exact = rho_posterior(data["y"], 2.0, 2.0)
    rho = post.samples["rho"]
    assert abs(rho.mean() - exact.mean()) < 4 * np.asarray(az.mcse(rho)).item()
    assert rho.std() == pytest.approx(exact.std(), rel=0.1)
    # the class posterior averaged over draws is a probability for every x
    p = class_posterior(np.array([-1.0, 0.5, 2.0]), rho, post.samples["mu"], post.samples["sigma"]).mean((0, 1))
    assert np.all((p > 0) & (p < 1)) and p[0] < p[1] < p[2]


@pytest.mark.parametrize("method", ["svi", "map", "mle"])
def test_engines_give_arviz_log_likelihood_for_x_and_y(method):
    data = {k: v[:50] for k, v in ppl_models.get("two_class").default_data(seed=0).items()}
    post = fit("two_class", data, method=method, progress=False, **({"num_steps": 200, "num_samples": 30}
                                                                     if method == "svi" else {}))
    chains, draws = post.samples["rho"].shape
    assert post.samples["mu"].shape == post.samples["sigma"].shape == (chains, draws, 2)
    idata = post.to_arviz()
    assert idata.log_likelihood["x"].shape == idata.log_likelihood["y"].shape == (chains, draws, 50)


def test_prior_predictive_and_spec():
    trace = pyro.poutine.trace(two_class).get_trace(None, None, N=7)
    assert trace.nodes["x"]["value"].shape == trace.nodes["y"]["value"].shape == (7,)
    spec = ppl_models.get("two_class")
    assert spec.engines[0] == "nuts" and spec.demo
    spec.validate(spec.default_data(seed=0))


def test_bad_input_is_one_clear_error():
    with pytest.raises(DataError, match="^y: needs both classes"):
        fit("two_class", {"x": [0.1, 0.2, 0.3], "y": [1, 1, 1]}, method="map", progress=False)
    with pytest.raises(DataError, match="^y: has N = 2"):
        fit("two_class", {"x": [0.1, 0.2, 0.3], "y": [0, 1]}, method="map", progress=False)
    with pytest.raises(DataError, match="^y: must be 0 or 1"):
        fit("two_class", {"x": [0.1, 0.2, 0.3], "y": [0, 1, 2]}, method="map", progress=False)
