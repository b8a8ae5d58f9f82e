"""The regression family against its oracles: closed-form ridge, scikit-learn's Lasso and LogisticRegression,
least squares, the exact Gaussian posterior, and Stan's reference posterior for kidiq.

Closed-form comparisons run in float64 (fixture `float64`): in float32 the optimiser's answer is only as
precise as a float32 objective allows (about 1e-3 on an intercept coupled to far-from-zero predictors),
which would hide a wrong penalty behind a loose tolerance.
"""

from __future__ import annotations

import time

import arviz as az
import numpy as np
import pytest
import sklearn
import torch
from scipy import stats
from sklearn.linear_model import Lasso, LogisticRegression, Ridge

import ppl_models
from inference import fit
from ppl_models import DataError
from ppl_models.regression import (LINEAR_TRUTH, class_probabilities, gaussian_posterior, linear_regression,
                                   softmax_regression)



def _linear_data(seed=1, n=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * np.array([1.0, 3.0, 0.5, 2.0, 1.0]) + np.array([5.0, -2.0, 0.0, 1.0, 10.0])
    y = 2.0 + X @ np.array([1.0, 0.0, -2.0, 0.0, 0.3]) + rng.normal(size=n)
    return X, y


def _point(post, site):
    return post.samples[site][0, 0]


# ---- linear regression: MAP = ridge, lasso; MLE = least squares ---------------------------------------
@pytest.mark.parametrize("standardize", [False, True])
def test_gaussian_prior_map_is_closed_form_ridge(float64, standardize):
    # MAP minimises SSE / (2 sigma^2) + |coef|^2 / (2 s^2): ridge with lambda = sigma^2 / s^2, intercept
    # unpenalised (its prior sits at the data's centre, where its term vanishes at the optimum)
    X, y = _linear_data()
    sigma, s = 1.5, 0.7
    post = fit("linear_regression", {"X": X, "y": y, "sigma": sigma, "prior_scale": s, "standardize": standardize},
               method="map", progress=False)
    sd = X.std(0) if standardize else np.ones(5)
    ridge = Ridge(alpha=sigma**2 / s**2).fit((X - X.mean(0)) / sd, y)
    coef = ridge.coef_ / sd
    intercept = ridge.intercept_ - coef @ X.mean(0)
    np.testing.assert_allclose(_point(post, "coef"), coef, atol=1e-6)
    assert _point(post, "intercept") == pytest.approx(intercept, abs=1e-6)
    # the exact Gaussian posterior's mean is the same point
    mean, _ = gaussian_posterior(X, y, sigma, s, standardize=standardize)
    np.testing.assert_allclose(mean, np.concatenate([[intercept], coef]), atol=1e-9)
    # and the penalty is real: without it the answer is least squares, which differs
    assert np.abs(coef - np.linalg.lstsq(np.column_stack([np.ones(60), X]), y, rcond=None)[0][1:]).max() > 0.05


def test_mle_is_least_squares(float64):
    X, y = _linear_data()
    post = fit("linear_regression", {"X": X, "y": y}, method="mle", progress=False)
    theta, rss, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)
    np.testing.assert_allclose(_point(post, "coef"), theta[1:], atol=1e-6)
    assert _point(post, "intercept") == pytest.approx(theta[0], abs=1e-5)
    assert _point(post, "sigma") == pytest.approx(np.sqrt(rss[0] / len(y)), rel=1e-6)  # MLE of sigma: RSS / N


def test_laplace_prior_map_is_sparse_and_matches_sklearn_lasso(float64):
    # MAP minimises SSE / (2 sigma^2) + |coef|_1 / b; times sigma^2 / N this is sklearn's
    # SSE / (2N) + alpha |coef|_1 with alpha = sigma^2 / (N b); the intercept is unpenalised in both.
    X, y = _linear_data()
    X = X - X.mean(0)
    sigma, b = 1.5, 0.05
    lasso = Lasso(alpha=sigma**2 / (len(y) * b), tol=1e-12, max_iter=100_000).fit(X, y)
    zero = lasso.coef_ == 0
    assert 0 < zero.sum() < 5  # the oracle itself is sparse but not empty
    # L-BFGS stalls at the L1 kinks (its curvature pairs are meaningless there), so the MAP uses Adam, whose
    # learning rate decays to lr / 10 = 2e-3; at a kink its iterate oscillates within about one step
    post = fit("linear_regression", {"X": X, "y": y, "sigma": sigma, "prior_scale": b, "prior": "laplace"},
               method="map", optimizer="adam", lr=0.02, num_steps=2000, progress=False)
    step = 0.02 / 10
    coef = _point(post, "coef")
    np.testing.assert_allclose(coef, lasso.coef_, atol=step)
    assert (np.abs(coef) < step).tolist() == zero.tolist()  # the same zero pattern
    assert _point(post, "intercept") == pytest.approx(lasso.intercept_, abs=step)


@pytest.mark.parametrize("noise", ["normal", "laplace", "student_t"])
def test_noise_families_log_likelihood(noise):
    X, y = _linear_data(n=30)
    post = fit("linear_regression", {"X": X, "y": y, "noise": noise, "df": 3.0}, method="mle", progress=False)
    a, w, s = _point(post, "intercept"), _point(post, "coef"), _point(post, "sigma")
    resid = y - a - X @ w
    expected = {"normal": stats.norm(0, s), "laplace": stats.laplace(0, s), "student_t": stats.t(3.0, 0, s)}[noise]
    loglik = post.to_arviz(prior=False, predictive=False).log_likelihood["y"].values
    assert loglik.shape == (1, 1, 30)
    np.testing.assert_allclose(loglik[0, 0], expected.logpdf(resid), rtol=1e-4, atol=1e-4)


def test_default_data_mle_recovers_truth_within_4_standard_errors(float64):
    spec = ppl_models.get("linear_regression")
    data = spec.default_data(seed=0)
    post = fit(spec, data, method="mle", progress=False)
    _, cov = gaussian_posterior(data["X"], data["y"], LINEAR_TRUTH["sigma"], prior_scale=1e6, intercept_scale=1e6)
    se = np.sqrt(np.diag(cov))
    estimate = np.concatenate([[_point(post, "intercept")], _point(post, "coef")])
    truth = np.concatenate([[LINEAR_TRUTH["intercept"]], LINEAR_TRUTH["coef"]])
    assert np.all(np.abs(estimate - truth) < 4 * se)


@pytest.mark.slow
def test_nuts_matches_exact_gaussian_posterior():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3)) * np.array([1.0, 2.0, 0.5]) + np.array([1.0, -1.0, 0.0])
    y = 0.5 + X @ np.array([1.0, -0.5, 0.0]) + rng.normal(size=40)
    sigma, s = 1.0, 0.5
    post = fit("linear_regression", {"X": X, "y": y, "sigma": sigma, "prior_scale": s, "standardize": True},
               method="nuts", num_chains=2, num_samples=400, num_warmup=200, jit_compile=True, progress=False)
    mean, cov = gaussian_posterior(X, y, sigma, s, standardize=True)
    draws = np.concatenate([post.samples["intercept"][..., None], post.samples["coef"]], axis=-1)
    mcse = np.array([np.asarray(az.mcse(draws[..., j])).item() for j in range(4)])
    assert np.all(np.abs(draws.mean((0, 1)) - mean) < 4 * mcse)
    np.testing.assert_allclose(draws.std((0, 1)), np.sqrt(np.diag(cov)), rtol=0.1)


# ---- NUTS against Stan's reference posterior ----------------------------------------------------------
@pytest.mark.slow
def test_nuts_flat_prior_reproduces_stan_kidiq(posteriordb):
    # kid_score ~ Normal(beta[1] + beta[2] mom_iq, sigma), flat beta, sigma ~ HalfCauchy(0, 2.5)
    data, reference = posteriordb("kidiq-kidscore_momiq")
    X = np.asarray(data["mom_iq"], dtype=float)[:, None]
    y = np.asarray(data["kid_score"], dtype=float)
    start = time.perf_counter()
    # mom_iq ~ 100 makes intercept and slope correlated at -0.99: a dense mass matrix removes that
    # four chains of 500: R-hat over two chains of 300 draws read 1.011 for sigma (ArviZ's rounding hid it)
    post = fit("linear_regression", {"X": X, "y": y, "prior": "flat", "sigma_scale": 2.5}, method="nuts",
               num_chains=4, num_samples=500, num_warmup=300, full_mass=True, progress=False)
    print(f"kidiq NUTS: {time.perf_counter() - start:.0f} s")
    assert post.problems() == []
    draws = {"beta[1]": post.samples["intercept"], "beta[2]": post.samples["coef"][..., 0],
             "sigma": post.samples["sigma"]}
    for name, x in draws.items():
        assert np.asarray(az.ess(x, method="bulk")).item() > 200, name
        assert abs(x.mean() - reference[name]["mean"]) < 4 * np.asarray(az.mcse(x)).item(), name
        assert x.std() == pytest.approx(reference[name]["sd"], rel=0.1), name


# ---- logistic and softmax regression against scikit-learn ---------------------------------------------
def _sklearn_logistic(method: str, C: float) -> LogisticRegression:
    """Unpenalised (MLE) or L2-penalised (MAP) logistic regression, in the spelling of this sklearn version."""
    old = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) < (1, 8)
    if method == "mle":
        kind = {"penalty": None} if old else {"C": np.inf}
    else:
        kind = {"penalty": "l2", "C": C} if old else {"C": C, "l1_ratio": 0.0}
    return LogisticRegression(tol=1e-12, max_iter=10_000, **kind)


def _classification_data(k, seed=2, n=150):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) + np.array([1.0, 0.0, -0.5])
    if k == 2:
        p = 1 / (1 + np.exp(-(0.3 + X @ np.array([1.5, -1.0, 0.0]))))
        return X, (rng.random(n) < p).astype(float)
    p = class_probabilities(X, [0.5, 0.0, -0.5], [[2.0, -1.0, -1.0], [0.0, 1.5, -1.5], [0.5, 0.0, 0.0]])
    return X, np.array([rng.choice(3, p=row) for row in p])


@pytest.mark.parametrize("method", ["mle", "map"])
def test_logistic_matches_sklearn(float64, method):
    # MAP minimises logloss + |coef|^2 / (2 s^2); sklearn minimises C logloss + |coef|^2 / 2: C = s^2.
    # sklearn's intercept is unpenalised: our intercept prior is made negligible (sd 1e4).
    X, y = _classification_data(2)
    C = 0.5
    data = {"X": X, "y": y}
    if method == "map":
        data.update(prior_scale=np.sqrt(C), intercept_scale=1e4)
    sk = _sklearn_logistic(method, C).fit(X, y)
    post = fit("logistic_regression", data, method=method, progress=False)
    np.testing.assert_allclose(_point(post, "coef"), sk.coef_[0], atol=1e-3)
    assert _point(post, "intercept") == pytest.approx(sk.intercept_[0], abs=1e-3)


@pytest.mark.parametrize("method", ["mle", "map"])
def test_softmax_matches_sklearn_multinomial_probabilities(float64, method):
    # Both use one coefficient column per class; the softmax is unchanged by a shift common to every
    # class, so the comparison is on the predicted class probabilities, which are unique.
    X, y = _classification_data(3)
    C = 0.5
    data = {"X": X, "y": y}
    if method == "map":
        data.update(prior_scale=np.sqrt(C), intercept_scale=1e4)
    sk = _sklearn_logistic(method, C).fit(X, y)
    post = fit("softmax_regression", data, method=method, progress=False)
    probs = class_probabilities(X, _point(post, "intercept"), _point(post, "coef"))
    np.testing.assert_allclose(probs, sk.predict_proba(X), atol=1e-3)
    if method == "map":  # the L2 penalty pins the common shift of coef (columns sum to zero in both)
        np.testing.assert_allclose(_point(post, "coef"), sk.coef_.T, atol=1e-3)


# ---- every model x every engine through fit -----------------------------------------------------------
_BUDGET = {"nuts": dict(num_chains=1, num_samples=30, num_warmup=30),
           "hmc": dict(num_chains=1, num_samples=30, num_warmup=30, trajectory_length=1.0),
           "svi": dict(num_steps=200, num_samples=40), "map": {}, "mle": {}}
_SHAPES = {"linear_regression": {"intercept": (), "coef": (4,), "sigma": ()},
           "logistic_regression": {"intercept": (), "coef": (3,)},
           "softmax_regression": {"intercept": (3,), "coef": (2, 3)}}


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m in ("nuts", "hmc") else m
                                    for m in ("nuts", "hmc", "svi", "map", "mle")])
@pytest.mark.parametrize("name", list(_SHAPES))
def test_every_engine_runs_with_arviz_log_likelihood_and_prediction(name, method):
    spec = ppl_models.get(name)
    assert method in spec.engines
    data = {k: v[:40] for k, v in spec.default_data(seed=0).items()}
    post = fit(name, data, method=method, progress=False, **_BUDGET[method])
    chains, draws = post.samples["intercept"].shape[:2]
    for site, shape in _SHAPES[name].items():
        assert post.samples[site].shape == (chains, draws) + shape
        assert np.isfinite(post.samples[site]).all()
    idata = post.to_arviz()
    assert idata.log_likelihood["y"].shape == (chains, draws, 40)
    assert idata.prior["coef"].shape[-len(_SHAPES[name]["coef"]):] == _SHAPES[name]["coef"]
    new = post.predict({"X": data["X"][:7]})  # a plain array, as a user passes it
    assert new["y"].shape == (chains, draws, 7)


def test_specs_and_default_data():
    for name in _SHAPES:
        spec = ppl_models.get(name)
        assert spec.engines[0] == "nuts" and spec.demo
        a, b = spec.default_data(seed=0), spec.default_data(seed=0)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        spec.validate(a)


def test_prior_predictive_runs_without_y():
    import pyro
    X = torch.randn(6, 2)
    for model, kw in ((linear_regression, {}), (softmax_regression, {"K": 4})):
        trace = pyro.poutine.trace(model).get_trace(X, None, **kw)
        assert trace.nodes["y"]["value"].shape == (6,)


# ---- bad input ----------------------------------------------------------------------------------------
def test_bad_input_is_one_clear_error():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(DataError, match="^y: has N = 9"):
        fit("linear_regression", {"X": X, "y": np.zeros(9)}, method="map", progress=False)
    with pytest.raises(DataError, match="^prior: must be one of normal, laplace, flat"):
        fit("linear_regression", {"X": X, "y": np.zeros(10), "prior": "cauchy"}, method="map", progress=False)
    with pytest.raises(DataError, match="^X: expected shape \\(N, D\\)"):
        fit("linear_regression", {"X": X[:, 0], "y": np.zeros(10)}, method="map", progress=False)
    with pytest.raises(DataError, match="^y: must be 0 or 1"):
        fit("logistic_regression", {"X": X, "y": np.arange(10)}, method="map", progress=False)
    with pytest.raises(DataError, match="^prior: must be one of normal, laplace"):
        fit("softmax_regression", {"X": X, "y": np.arange(10) % 3, "prior": "flat"}, method="map", progress=False)
    with pytest.raises(DataError, match="^y: holds class 2 but K = 2"):
        fit("softmax_regression", {"X": X, "y": np.arange(10) % 3, "K": 2}, method="map", progress=False)
    constant = np.column_stack([X[:, 0], np.ones(10)])
    with pytest.raises(DataError, match="^X: column 1 is constant"):
        fit("linear_regression", {"X": constant, "y": np.zeros(10), "standardize": True}, method="map",
            progress=False)
    with pytest.raises(DataError, match="^y: holds only class 0"):
        fit("softmax_regression", {"X": X, "y": np.zeros(10, dtype=int)}, method="map", progress=False)


def test_default_map_optimizer_handles_the_lasso_kinks():
    """The default MAP must not stop at a wrong point on an L1 objective (L-BFGS stalls at the kinks)."""
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = X @ np.array([1.5, 0.0, 0.0, -2.0]) + 0.5 * rng.normal(size=60)
    sigma, b = 0.5, 0.05
    post = fit("linear_regression", {"X": X, "y": y, "prior": "laplace", "prior_scale": b, "sigma": sigma},
               method="map", progress=False)
    assert "optimizer: adam" in post.notes
    lasso = Lasso(alpha=sigma**2 / (len(y) * b), tol=1e-10, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(post.samples["coef"].ravel(), lasso.coef_, atol=2e-3)
