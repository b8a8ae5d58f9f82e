"""Factor analysis and PPCA against their oracles: scikit-learn's FactorAnalysis (MLE), Tipping & Bishop's
closed-form PPCA, and the exact marginal N(mu, W W^T + diag(psi)) of the collapsed likelihood."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from sklearn.decomposition import FactorAnalysis

import ppl_models
from inference import fit
from ppl_models import DataError
from ppl_models.factor_analysis import TRUTH, factor_analysis, implied_covariance, ppca, ppca_closed_form


def rel_frobenius(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def fa_data() -> dict:
    return ppl_models.get("factor_analysis").default_data(seed=0)


@pytest.fixture(scope="module")
def sklearn_covariance(fa_data) -> np.ndarray:
    fa = FactorAnalysis(n_components=2, tol=1e-12, max_iter=20000).fit(fa_data["x"].astype(float))
    return fa.get_covariance()


def test_mle_implied_covariance_matches_sklearn(fa_data, sklearn_covariance):
    post = fit("factor_analysis", fa_data, method="mle", progress=False)
    C = implied_covariance(post.samples["W"][0, 0], post.samples["psi"][0, 0])
    assert rel_frobenius(C, sklearn_covariance) < 0.02
    # the check can fail: the truth that generated the data is off by sampling error, more than 2 %
    assert rel_frobenius(implied_covariance(TRUTH["W"], TRUTH["psi"]), sklearn_covariance) > 0.02
    # mu's MLE is the sample mean
    np.testing.assert_allclose(post.samples["mu"][0, 0], fa_data["x"].mean(0), atol=1e-3)


def test_ppca_mle_matches_tipping_bishop():
    data = ppl_models.get("ppca").default_data(seed=0)
    post = fit("ppca", data, method="mle", progress=False)
    W, sigma2 = ppca_closed_form(data["x"], K=2)
    ours = implied_covariance(post.samples["W"][0, 0], post.samples["sigma"][0, 0] ** 2)
    assert rel_frobenius(ours, W @ W.T + sigma2 * np.eye(6)) < 0.02
    assert post.samples["sigma"][0, 0] ** 2 == pytest.approx(sigma2, rel=0.02)
    # the closed form is a different answer from factor analysis (heteroscedastic noise): not a tautology
    fa = FactorAnalysis(n_components=2, tol=1e-12, max_iter=20000).fit(data["x"].astype(float))
    assert not np.allclose(fa.noise_variance_, sigma2, rtol=0.02)


def test_collapsed_likelihood_is_the_exact_marginal():
    """log N(x | mu, W W^T + diag(psi)) computed by scipy equals the collapsed model's log-likelihood."""
    rng = np.random.default_rng(1)
    W, mu, psi = rng.normal(size=(5, 2)), rng.normal(size=5), rng.uniform(0.1, 1.0, size=5)
    x = rng.normal(size=(7, 5))
    cond = pyro.poutine.condition(factor_analysis, {"W": torch.tensor(W), "mu": torch.tensor(mu),
                                                    "psi": torch.tensor(psi)})
    with torch.no_grad():
        trace = pyro.poutine.trace(cond).get_trace(x=torch.tensor(x), K=2)
    ours = trace.nodes["x"]["fn"].log_prob(torch.tensor(x)).numpy()
    exact = stats.multivariate_normal(mu, W @ W.T + np.diag(psi)).logpdf(x)
    np.testing.assert_allclose(ours, exact, rtol=1e-10)


def test_uncollapsed_conditional_is_w_z_plus_mu():
    rng = np.random.default_rng(2)
    W, mu, psi, z = rng.normal(size=(4, 3)), rng.normal(size=4), rng.uniform(0.1, 1, 4), rng.normal(size=(6, 3))
    x = rng.normal(size=(6, 4))
    values = {"W": torch.tensor(W), "mu": torch.tensor(mu), "psi": torch.tensor(psi), "z": torch.tensor(z)}
    with torch.no_grad():
        trace = pyro.poutine.trace(pyro.poutine.condition(factor_analysis, values)).get_trace(
            x=torch.tensor(x), K=3, collapsed=False)
    ours = trace.nodes["x"]["fn"].log_prob(torch.tensor(x)).numpy()
    exact = stats.norm(z @ W.T + mu, np.sqrt(psi)).logpdf(x).sum(-1)
    np.testing.assert_allclose(ours, exact, rtol=1e-10)


def test_map_and_log_likelihood_shapes(fa_data, sklearn_covariance):
    post = fit("factor_analysis", fa_data, method="map", progress=False)
    idata = post.to_arviz(prior=False)
    assert idata.log_likelihood["x"].shape == (1, 1, 300)
    # the weak priors move the estimate little from the MLE
    C = implied_covariance(post.samples["W"][0, 0], post.samples["psi"][0, 0])
    assert rel_frobenius(C, sklearn_covariance) < 0.05


def test_prior_predictive_and_bad_input():
    with torch.no_grad():
        trace = pyro.poutine.trace(ppca).get_trace(x=None, N=4, D=3, K=2)
    assert trace.nodes["x"]["value"].shape == (4, 3)
    with pytest.raises(DataError, match="^x: expected shape"):
        fit("factor_analysis", {"x": np.zeros(5)}, method="map", progress=False)
    with pytest.raises(DataError, match="^x: needs at least 2 columns"):
        fit("ppca", {"x": np.zeros((5, 1))}, method="map", progress=False)
    with pytest.raises(DataError, match="^x: contains NaN"):
        fit("factor_analysis", {"x": np.full((5, 3), np.nan)}, method="map", progress=False)
    with pytest.raises(DataError, match="^collapsed: must be true or false"):
        fit("factor_analysis", {"x": np.zeros((5, 3)), "collapsed": "no"}, method="map", progress=False)


@pytest.mark.slow
def test_uncollapsed_svi_with_local_z_close_to_sklearn(fa_data, sklearn_covariance):
    """SVI over the local z_i (mean-field AutoNormal): its ELBO carries a small variational bias, so the
    posterior-mean implied covariance is compared at 5 %, not the 2 % of the exact MLE."""
    data = {**fa_data, "collapsed": False}
    post = fit("factor_analysis", data, method="svi", seed=0, num_steps=2000, lr=0.02, num_samples=200,
               progress=False)
    assert post.samples["z"].shape == (1, 200, 300, 2)
    C = implied_covariance(post.samples["W"], post.samples["psi"]).mean((0, 1))
    assert rel_frobenius(C, sklearn_covariance) < 0.05


@pytest.mark.slow
def test_nuts_posterior_centres_on_the_mle(fa_data, sklearn_covariance):
    """No exact posterior exists; with N = 300 and weak priors (Bernstein-von Mises) the posterior mean of
    each entry of W W^T + diag(psi) lies within 3 posterior sds of the MLE. W itself is only identified up
    to a rotation, so convergence is judged on the implied covariance (R-hat over 2 chains)."""
    import arviz as az

    # the posterior is exactly invariant under rotations of W (a circle of modes for K = 2): untamed, NUTS
    # spends depth-10 trees travelling it; depth 6 keeps this at ~30 s (compiled; 190 s with the eager leaf
    # step). Chains reach points where the low-rank covariance's Cholesky factor fails: the fast backend must
    # treat those as divergences of that chain alone, as Pyro's kernels do, not stop.
    post = fit("factor_analysis", fa_data, method="nuts", seed=0, num_chains=2, num_samples=200,
               num_warmup=200, max_tree_depth=6, progress=False)
    assert "fast backend" in post.notes[0] and "compiled leapfrog step" in post.notes[0]
    C = implied_covariance(post.samples["W"], post.samples["psi"])  # (chain, draw, D, D)
    mean, sd = C.mean((0, 1)), C.std((0, 1))
    assert (np.abs(mean - sklearn_covariance) < 3 * sd).all()
    rhat = az.rhat(az.convert_to_dataset({"C": C})).C.values
    assert rhat.max() < 1.05
    assert post.to_arviz(prior=False).log_likelihood["x"].shape == (2, 200, 300)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["factor_analysis", "ppca"])
@pytest.mark.parametrize("method", ["hmc", "svi"])
def test_remaining_engines_run(name, method):
    options = {"hmc": dict(num_chains=1, num_samples=30, num_warmup=30, trajectory_length=0.5),
               "svi": dict(num_steps=300, lr=0.02, num_samples=50)}[method]
    post = fit(name, None, method=method, progress=False, **options)
    noise = post.samples["psi"] if name == "factor_analysis" else post.samples["sigma"] ** 2
    assert np.isfinite(implied_covariance(post.samples["W"], noise)).all()
    assert post.to_arviz(prior=False).log_likelihood["x"].shape[-1] == 300


def test_canonical_loadings_pick_one_representative_of_each_rotation_class():
    """W R and W give the same canonical W for every orthogonal R (signs included); W W^T and W z are kept."""
    from ppl_models.factor_analysis import canonical_loadings, implied_covariance

    rng = np.random.default_rng(0)
    W, psi, z = rng.normal(size=(2, 3, 6, 2)), rng.random((2, 3, 6)), rng.normal(size=(2, 3, 10, 2))
    angle = rng.uniform(0, 2 * np.pi, size=(2, 3))
    R = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    R[..., 1] *= rng.choice([-1, 1], size=(2, 3))[..., None]  # reflections too
    a, b = canonical_loadings({"W": W, "z": z}), canonical_loadings({"W": W @ R, "z": z @ R})
    np.testing.assert_allclose(a["W"], b["W"], atol=1e-12)
    np.testing.assert_allclose(a["z"], b["z"], atol=1e-12)
    np.testing.assert_allclose(implied_covariance(a["W"], psi), implied_covariance(W, psi), atol=1e-12)
    np.testing.assert_allclose(np.einsum("cdjk,cdnk->cdnj", a["W"], a["z"]), np.einsum("cdjk,cdnk->cdnj", W, z),
                               atol=1e-12)
    assert not np.allclose(W, W @ R)  # the rotations were real
