"""The mixtures against their oracles: a grid-quadrature posterior (coin_mixture), scikit-learn's EM and the
hand formula for responsibilities (gmm), and Stan's reference posterior for low_dim_gauss_mix."""

from __future__ import annotations


import arviz as az
import numpy as np
import pyro
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import plates
import ppl_models
from inference import fit
from ppl_models import DataError
from ppl_models.coin_mixture import TRUE_THETA, relabel
from ppl_models.gmm import TRUTH, OrderedNormal, gmm, multivariate_data, responsibilities

# ---- coin_mixture ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coins() -> dict:
    return ppl_models.get("coin_mixture").default_data(seed=0)


@pytest.fixture(scope="module")
def grid_posterior(coins) -> dict:
    """Posterior means of (theta_1 < theta_2, pi_1) under the flat default priors, by quadrature on a grid.

    The prior is symmetric in the coins, so the relabelled posterior is the posterior restricted to the
    ordered region theta_1 < theta_2 (where the whole grid lies)."""
    heads = coins["flips"].sum(1)
    tosses = coins["flips"].shape[1]
    t1, t2, p1 = np.linspace(0.05, 0.4, 71), np.linspace(0.6, 0.95, 71), np.linspace(0.1, 0.75, 66)
    T1, T2, P1 = np.meshgrid(t1, t2, p1, indexing="ij")

    def log_binom(theta):  # (grid..., N); the binomial coefficient cancels
        return heads * np.log(theta[..., None]) + (tosses - heads) * np.log1p(-theta[..., None])

    log_post = np.logaddexp(np.log(P1)[..., None] + log_binom(T1), np.log1p(-P1)[..., None] + log_binom(T2)).sum(-1)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    # the grid holds the posterior: its faces carry no mass
    for axis in range(3):
        assert np.take(w, [0, -1], axis=axis).sum() < 1e-6
    return {"theta": np.array([(w * T1).sum(), (w * T2).sum()]), "pi0": float((w * P1).sum()),
            "theta_sd": np.sqrt([(w * T1**2).sum() - (w * T1).sum() ** 2, (w * T2**2).sum() - (w * T2).sum() ** 2])}


def test_coin_mixture_log_likelihood_is_the_hand_mixture(coins):
    post = fit("coin_mixture", coins, method="map", progress=False)
    theta, pi = post.samples["theta"][0, 0], post.samples["pi"][0, 0]
    heads, tosses = coins["flips"].sum(1), coins["flips"].shape[1]
    hand = logsumexp(np.log(pi) + heads[:, None] * np.log(theta) + (tosses - heads)[:, None] * np.log1p(-theta),
                     axis=1)
    ll = post.to_arviz(prior=False).log_likelihood["flips"].values[0, 0]
    np.testing.assert_allclose(ll, hand, rtol=1e-5)


def test_coin_mixture_svi_with_enumeration_recovers_the_coins(coins, grid_posterior):
    post = fit("coin_mixture", coins, method="svi", seed=0, num_steps=1000, lr=0.05, num_samples=500,
               progress=False)
    assert "discrete sites z summed out by enumeration (TraceEnum_ELBO)" in post.notes
    s = relabel(post.samples)
    np.testing.assert_allclose(s["theta"].mean((0, 1)), grid_posterior["theta"], atol=0.02)
    assert s["pi"][..., 0].mean() == pytest.approx(grid_posterior["pi0"], abs=0.03)
    # separated coins, each within 4 posterior sds of the bias that generated the data
    assert (np.abs(grid_posterior["theta"] - TRUE_THETA) < 4 * grid_posterior["theta_sd"]).all()
    assert post.samples["z"].shape == (1, 500, 60)


@pytest.mark.slow
def test_coin_mixture_nuts_with_enumeration_matches_the_grid(coins, grid_posterior):
    """~1 min: 2 chains x (300 warm-up + 300) draws, z summed out in every gradient."""
    post = fit("coin_mixture", coins, method="nuts", seed=0, num_chains=2, num_samples=300, num_warmup=300,
               jit_compile=True, progress=False)
    s = relabel(post.samples)
    ds = az.convert_to_dataset({"theta": s["theta"], "pi": s["pi"]})
    mcse = az.mcse(ds, method="mean")
    assert (np.abs(s["theta"].mean((0, 1)) - grid_posterior["theta"]) < 4 * mcse["theta"].values).all()
    assert abs(s["pi"][..., 0].mean() - grid_posterior["pi0"]) < 4 * float(mcse["pi"].values[0])
    assert float(az.rhat(ds)["theta"].max()) < 1.05
    assert post.samples["z"].shape == (2, 300, 60)


def test_relabel_sorts_coins_and_maps_assignments():
    samples = {"theta": np.array([[[0.9, 0.1], [0.2, 0.7]]]), "pi": np.array([[[0.3, 0.7], [0.6, 0.4]]]),
               "z": np.array([[[0, 1, 1], [0, 1, 0]]])}
    out = relabel(samples)
    np.testing.assert_array_equal(out["theta"], [[[0.1, 0.9], [0.2, 0.7]]])
    np.testing.assert_array_equal(out["pi"], [[[0.7, 0.3], [0.6, 0.4]]])
    np.testing.assert_array_equal(out["z"], [[[1, 0, 0], [0, 1, 0]]])  # the same coins, new names


def test_coin_mixture_single_tosses_and_bad_input():
    post = fit("coin_mixture", {"flips": [1, 0, 1, 1, 0, 1]}, method="map", progress=False)
    assert post.samples["z"].shape == (1, 1, 6)
    with torch.no_grad():
        trace = pyro.poutine.trace(ppl_models.get("coin_mixture").model).get_trace(flips=None, N=4, M=3, K=3)
    assert trace.nodes["flips"]["value"].shape == (4, 3) and trace.nodes["theta"]["value"].shape == (3,)
    with pytest.raises(DataError, match="^flips: must be 0 or 1"):
        fit("coin_mixture", {"flips": [0, 2, 1]}, method="map", progress=False)
    with pytest.raises(DataError, match="^K: must be at least 1"):
        fit("coin_mixture", {"flips": [0, 1], "K": 0}, method="map", progress=False)


def test_coin_mixture_diagram_has_separate_k_and_n_plates():
    g = plates.graph("coin_mixture")
    G = g.networkx
    assert {n: G.nodes[n]["kind"] for n in G} == {
        "theta": "latent", "pi": "latent", "z": "latent", "flips": "observed",
        "alpha": "hyperparameter", "beta": "hyperparameter", "gamma": "hyperparameter"}
    assert {("pi", "z"), ("z", "flips"), ("theta", "flips")} <= set(G.edges)
    assert set(G.edges) == {("pi", "z"), ("z", "flips"), ("theta", "flips"),
                            ("alpha", "theta"), ("beta", "theta"), ("gamma", "pi")}
    assert G.nodes["theta"]["plates"] == ("K",) and G.nodes["z"]["plates"] == G.nodes["flips"]["plates"] == ("N",)
    assert G.nodes["pi"]["plates"] == ()  # pi outside both loops; no site lies in K and N at once
    assert not any(set(G.nodes[n]["plates"]) >= {"K", "N"} for n in G)
    assert g.plates["K"]["index"] == "i" and g.plates["N"]["index"] == "j"
    assert G.nodes["z"]["enumerated"]
    assert g.factorization() == "p(x, z, theta, pi) = p(pi) prod_i p(theta_i) prod_j p(z_j | pi) p(x_j | theta, z_j)"


# ---- gmm ---------------------------------------------------------------------------------------------


def hand_responsibilities(x, w, mu, s):
    out = np.zeros((len(x), len(w)))
    for i, xi in enumerate(x):
        num = [w[k] * np.prod(stats.norm(mu[k], s[k]).pdf(xi)) for k in range(len(w))]
        out[i] = np.array(num) / sum(num)
    return out


def test_responsibilities_equal_the_hand_formula_and_sum_to_one():
    x = ppl_models.get("gmm").default_data(seed=0)["x"][:20]
    r = responsibilities(x, TRUTH["weights"], TRUTH["locs"], TRUTH["scales"])
    np.testing.assert_allclose(r, hand_responsibilities(x, TRUTH["weights"], TRUTH["locs"], TRUTH["scales"]),
                               rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(r.sum(1), 1.0, rtol=1e-12)
    data, truth = multivariate_data(seed=0, n=15)
    r2 = responsibilities(data["x"], truth["weights"], truth["locs"], truth["scales"])
    np.testing.assert_allclose(r2, hand_responsibilities(data["x"], truth["weights"], truth["locs"], truth["scales"]),
                               rtol=1e-9, atol=1e-300)
    # over draws: (chain, draw, K) parameters give (chain, draw, N, K)
    w = np.stack([TRUTH["weights"], TRUTH["weights"][::-1]])[None]
    locs, scales = (np.broadcast_to(TRUTH[k], (1, 2, 2)) for k in ("locs", "scales"))
    batch = responsibilities(x, w, locs, scales)
    assert batch.shape == (1, 2, 20, 2)
    hand = hand_responsibilities(x, w[0, 1], TRUTH["locs"], TRUTH["scales"])
    np.testing.assert_allclose(batch[0, 1], hand, rtol=1e-9)


def test_ordered_normal_is_the_sorted_normal_pair():
    d = OrderedNormal(0.0, 1.0, 2, validate_args=False)  # the grid covers the unordered half too
    # density 2 N(a) N(b) on a < b integrates to one
    g = np.linspace(-7, 7, 1401)
    A, B = np.meshgrid(g, g, indexing="ij")
    value = torch.tensor(np.stack([A, B], -1))
    inside = (value[..., 0] < value[..., 1]).double() + 0.5 * (value[..., 0] == value[..., 1]).double()
    dens = inside * d.log_prob(value).exp()  # trapezoid weight 1/2 on the diagonal edge
    assert float(dens.sum()) * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=2e-3)
    # E[max of two standard normals] = 1 / sqrt(pi)
    torch.manual_seed(0)
    draws = d.sample((100_000,))
    assert (draws[:, 0] < draws[:, 1]).all()
    se = float(draws[:, 1].std()) / np.sqrt(len(draws))
    assert abs(float(draws[:, 1].mean()) - 1 / np.sqrt(np.pi)) < 4 * se


@pytest.fixture(scope="module")
def gmm_data() -> dict:
    return ppl_models.get("gmm").default_data(seed=0)


def test_gmm_mle_equals_sklearn_em(gmm_data):
    post = fit("gmm", gmm_data, method="mle", progress=False)
    em = GaussianMixture(2, covariance_type="diag", tol=1e-12, max_iter=10_000, reg_covar=0.0,
                         means_init=TRUTH["locs"][:, None]).fit(gmm_data["x"][:, None].astype(float))
    order = np.argsort(em.means_[:, 0])
    np.testing.assert_allclose(post.samples["locs"][0, 0], em.means_[order, 0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(post.samples["scales"][0, 0], np.sqrt(em.covariances_[order, 0]), rtol=1e-3)
    np.testing.assert_allclose(post.samples["weights"][0, 0], em.weights_[order], rtol=1e-3)


def test_gmm_map_recovers_the_truth_and_assignments(gmm_data):
    post = fit("gmm", gmm_data, method="map", progress=False)
    w, mu, s = (post.samples[k][0, 0] for k in ("weights", "locs", "scales"))
    n = len(gmm_data["x"])
    counts = n * TRUTH["weights"]
    assert (np.abs(mu - TRUTH["locs"]) < 4 * TRUTH["scales"] / np.sqrt(counts)).all()
    assert (np.abs(s - TRUTH["scales"]) < 4 * TRUTH["scales"] / np.sqrt(2 * counts)).all()
    assert (np.abs(w - TRUTH["weights"]) < 4 * np.sqrt(TRUTH["weights"] * (1 - TRUTH["weights"]) / n)).all()
    # reported z is the most probable assignment given the estimate: the argmax of the responsibilities
    r = responsibilities(gmm_data["x"], w, mu, s)
    np.testing.assert_array_equal(post.samples["z"][0, 0], r.argmax(1))
    # log-likelihood per point is log sum_k w_k N(x_i | mu_k, s_k^2)
    ll = post.to_arviz(prior=False).log_likelihood["x"].values[0, 0]
    hand = logsumexp(np.log(w) + stats.norm(mu, s).logpdf(gmm_data["x"][:, None].astype(float)), axis=1)
    np.testing.assert_allclose(ll, hand, rtol=1e-4)


def test_gmm_prior_sampling_and_bad_input():
    with torch.no_grad():
        trace = pyro.poutine.trace(gmm).get_trace(x=None, N=5, D=2, K=3)
    assert trace.nodes["x"]["value"].shape == (5, 2)
    locs = trace.nodes["locs"]["value"]
    assert locs.shape == (3, 2) and (locs[1:, 0] > locs[:-1, 0]).all()
    with pytest.raises(DataError, match="^x: expected shape"):
        fit("gmm", {"x": np.zeros((2, 2, 2))}, method="map", progress=False)
    with pytest.raises(DataError, match="^x: contains an infinite value"):
        fit("gmm", {"x": [0.0, np.inf]}, method="map", progress=False)


@pytest.mark.slow
def test_gmm_svi_multivariate_recovers_the_truth():
    data, truth = multivariate_data(seed=0)
    post = fit("gmm", data, method="svi", seed=0, num_steps=1500, lr=0.05, num_samples=300, progress=False)
    counts = len(data["x"]) * truth["weights"]
    locs = post.samples["locs"].mean((0, 1))
    assert locs.shape == (3, 2)
    assert (np.abs(locs - truth["locs"]) < 4 * truth["scales"] / np.sqrt(counts[:, None])).all()
    r = responsibilities(data["x"], post.samples["weights"], post.samples["locs"], post.samples["scales"])
    assert r.shape == (1, 300, 200, 3)
    np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-9)


@pytest.mark.slow
def test_gmm_nuts_reproduces_stan_low_dim_gauss_mix(posteriordb):
    """Stan: ordered mu ~ Normal(0, 2), sigma ~ HalfNormal(2), theta ~ Beta(5, 5) = Dirichlet(5, 5) weight of
    the lower component; N = 1000. ~2 min: 2 chains x (300 warm-up + 500) draws, JIT-compiled."""
    stan_data, ref = posteriordb("low_dim_gauss_mix-low_dim_gauss_mix")
    y = np.asarray(stan_data["y"])
    data = {"x": y, "K": 2, "loc_mean": 0.0, "loc_sd": 2.0, "scale_sd": 2.0, "concentration": 5.0}
    post = fit("gmm", data, method="nuts", seed=0, num_chains=2, num_samples=500, num_warmup=300,
               jit_compile=True, progress=False)
    draws = {"mu[1]": post.samples["locs"][..., 0], "mu[2]": post.samples["locs"][..., 1],
             "sigma[1]": post.samples["scales"][..., 0], "sigma[2]": post.samples["scales"][..., 1],
             "theta": post.samples["weights"][..., 0]}
    ds = az.convert_to_dataset({k.replace("[", "_").replace("]", ""): v for k, v in draws.items()})
    mcse = az.mcse(ds, method="mean")
    rhat = az.rhat(ds)
    for name, d in draws.items():
        key = name.replace("[", "_").replace("]", "")
        assert abs(d.mean() - ref[name]["mean"]) < 4 * float(mcse[key]), name
        assert abs(d.std() / ref[name]["sd"] - 1) < 0.10, name
        assert float(rhat[key]) < 1.05, name
    assert post.problems() == [] or all("ess" in p.lower() for p in post.problems())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gmm", "coin_mixture"])
def test_hmc_runs_with_enumeration(name):
    # a short trajectory: with the default 2 pi and the adapted step size, one gmm run took 12 minutes
    post = fit(name, None, method="hmc", seed=0, num_chains=1, num_samples=20, num_warmup=20, trajectory_length=0.5,
               jit_compile=True, progress=False)
    assert post.to_arviz(prior=False).log_likelihood.sizes["draw"] == 20
