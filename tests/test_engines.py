"""The engines on any Pyro callable: enumeration, local latents, ArviZ groups, diagnostics, seeds, errors."""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import optimize, stats
from scipy.special import logsumexp

from inference import InputError, Posterior, fit
from inference import arviz_compat as azc
from ppl import checks

X_MIX = np.array([-0.3, 0.2, 3.1, 2.7, 0.5, 3.4, -1.0, 2.9, 0.1, 3.3, 1.5, 0.0], dtype=np.float32)


def only_discrete(x=None):
    """z_i ~ Bernoulli(0.3), x_i ~ Normal(2 z_i, 1): every latent is discrete."""
    with pyro.plate("N", len(x)):
        z = pyro.sample("z", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)


def mixture_weight(x=None):
    """p ~ Beta(2, 2); z_i ~ Bernoulli(p); x_i ~ Normal(3 z_i, 1): one global, one enumerated local."""
    p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with pyro.plate("N", len(x)):
        z = pyro.sample("z", dist.Bernoulli(p))
        pyro.sample("x", dist.Normal(3.0 * z, 1.0), obs=x)


def marginal_log_lik(p, x):
    return np.logaddexp(np.log(p) + stats.norm.logpdf(x, 3, 1), np.log1p(-p) + stats.norm.logpdf(x, 0, 1))


def test_only_discrete_latents_give_exact_posterior_draws():
    x = torch.tensor(X_MIX)
    post = fit(only_discrete, {"x": x}, method="nuts", num_chains=2, num_samples=2000, progress=False)
    assert any("exact posterior by enumeration" in n for n in post.notes)
    z = post.samples["z"]
    assert z.shape == (2, 2000, len(X_MIX))
    prior_1 = 0.3 * stats.norm.pdf(X_MIX, 2, 1)
    exact = prior_1 / (prior_1 + 0.7 * stats.norm.pdf(X_MIX, 0, 1))  # Bayes' rule per point
    freq = z.reshape(-1, len(X_MIX)).mean(0)
    se = np.sqrt(exact * (1 - exact) / 4000)
    assert np.all(np.abs(freq - exact) < 4 * se + 1e-9)
    # the log-likelihood sums z out exactly
    loglik = post.to_arviz(prior=False).log_likelihood["x"].values
    expected = np.logaddexp(np.log(0.3) + stats.norm.logpdf(X_MIX, 2, 1), np.log(0.7) + stats.norm.logpdf(X_MIX, 0, 1))
    np.testing.assert_allclose(loglik[0, 0], expected, rtol=1e-5)


def _exact_marginal_map(use_prior: bool) -> float:
    def neg(p):
        prior = stats.beta(2, 2).logpdf(p) if use_prior else 0.0
        return -(prior + marginal_log_lik(p, X_MIX).sum())

    return optimize.minimize_scalar(neg, bounds=(1e-6, 1 - 1e-6), method="bounded", options={"xatol": 1e-9}).x


@pytest.mark.parametrize("method", ["map", "mle"])
def test_point_estimates_sum_out_discrete_latents(method):
    post = fit(mixture_weight, {"x": torch.tensor(X_MIX)}, method=method, progress=False)
    assert post.samples["p"].item() == pytest.approx(_exact_marginal_map(method == "map"), abs=1e-4)
    assert any("summed out exactly by enumeration" in n for n in post.notes)
    # z reported as the most probable assignment given the estimate
    p = post.samples["p"].item()
    on = np.log(p) + stats.norm.logpdf(X_MIX, 3, 1) > np.log1p(-p) + stats.norm.logpdf(X_MIX, 0, 1)
    assert post.samples["z"].reshape(-1).tolist() == on.astype(float).tolist()


@pytest.mark.slow
def test_nuts_with_enumeration_matches_quadrature():
    grid = np.linspace(1e-4, 1 - 1e-4, 20001)
    logpost = stats.beta(2, 2).logpdf(grid) + np.array([marginal_log_lik(g, X_MIX).sum() for g in grid])
    w = np.exp(logpost - logsumexp(logpost))
    mean, sd = (w * grid).sum(), np.sqrt((w * grid**2).sum() - (w * grid).sum() ** 2)
    post = fit(mixture_weight, {"x": torch.tensor(X_MIX)}, method="nuts", seed=3, num_chains=2, num_samples=500,
               num_warmup=300, progress=False)
    idata = post.to_arviz(prior=False)
    mcse_mean = float(az.mcse(idata, var_names=["p"], method="mean")["p"])
    mcse_sd = checks.mcse_sd(post.samples["p"])  # ArviZ's, also where numba is installed
    assert abs(post.samples["p"].mean() - mean) < 4 * mcse_mean
    assert abs(post.samples["p"].std() - sd) < 4 * mcse_sd
    assert post.samples["z"].shape == (2, 500, len(X_MIX))
    # each z draw comes from its exact conditional given that draw's p
    p = post.samples["p"].reshape(-1, 1)
    on = p * stats.norm.pdf(X_MIX, 3, 1)
    conditional = on / (on + (1 - p) * stats.norm.pdf(X_MIX, 0, 1))
    z = post.samples["z"].reshape(-1, len(X_MIX))
    se = np.sqrt((conditional * (1 - conditional)).sum(0)) / len(p)
    assert np.all(np.abs(z.mean(0) - conditional.mean(0)) < 4 * se + 1e-9)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[1, 5],
                               marginal_log_lik(post.samples["p"][1, 5], X_MIX), rtol=1e-4)


def hierarchical(x=None):
    """mu ~ Normal(0, 10); z_i ~ Normal(mu, 1); x_i ~ Normal(z_i, 1): so x_i ~ Normal(mu, 2) marginally.

    Written over leading batch dims (``mu.unsqueeze(-1)``), the other broadcasting style the engines accept.
    """
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("N", len(x)):
        z = pyro.sample("z", dist.Normal(mu.unsqueeze(-1), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def test_mle_integrates_continuous_local_latents():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(1.5, np.sqrt(2), size=40), dtype=torch.float32)
    post = fit(hierarchical, {"x": x}, method="mle", num_steps=3000, lr=0.05, progress=False)
    assert any("variational" in n for n in post.notes)
    # the marginal MLE of mu is the sample mean; the variational family holds the exact z posterior
    assert post.samples["mu"].item() == pytest.approx(float(x.mean()), abs=0.05)
    assert post.samples["z"].shape == (1, 1, 40)


@pytest.mark.parametrize("method", ["nuts", "hmc", "svi", "map", "mle"])
def test_every_method_converts_to_arviz(method):
    opts = {"nuts": dict(num_chains=2, num_samples=100, num_warmup=100),
            "hmc": dict(num_chains=2, num_samples=100, num_warmup=100),
            "svi": dict(num_steps=300, num_samples=200)}.get(method, {})
    post = fit("coin", method=method, progress=False, **opts)
    idata = post.to_arviz()
    for group in ("posterior", "log_likelihood", "posterior_predictive", "observed_data", "prior"):
        assert group in azc.groups(idata), group
    if method in ("nuts", "hmc"):
        stats_ = idata.sample_stats
        for name in ("diverging", "energy", "lp", "acceptance_rate", "step_size", "n_steps"):
            assert stats_[name].shape == (2, 100)
    else:
        assert "loss" in azc.groups(idata)
    summary = az.summary(idata, var_names=["p"], kind="stats")
    assert 0 < summary.loc["p", "mean"] < 1
    assert idata.log_likelihood["flips"].shape == (post.num_chains, post.num_draws, 20)
    # log-likelihood is the Bernoulli log pmf at each draw
    p = post.samples["p"][0, 0]
    flips = idata.observed_data["flips"].values
    np.testing.assert_allclose(idata.log_likelihood["flips"].values[0, 0], stats.bernoulli(p).logpmf(flips), rtol=1e-5)
    ppc = idata.posterior_predictive["flips"].values
    assert ppc.shape == (post.num_chains, post.num_draws, 20) and set(np.unique(ppc)) <= {0.0, 1.0}


def test_loo_runs_on_nuts():
    post = fit("coin", method="nuts", num_chains=2, num_samples=300, num_warmup=200, progress=False)
    loo = azc.loo(post.to_arviz())  # (az.loo: .elpd in ArviZ 1.x, .elpd_loo in 0.x)
    assert np.isfinite(loo.elpd)


def test_same_seed_same_draws_and_different_seed_different_draws():
    kw = dict(method="nuts", num_chains=2, num_samples=50, num_warmup=50, progress=False)
    a, b, c = fit("coin", seed=5, **kw), fit("coin", seed=5, **kw), fit("coin", seed=6, **kw)
    np.testing.assert_array_equal(a.samples["p"], b.samples["p"])
    assert not np.array_equal(a.samples["p"], c.samples["p"])
    s1 = fit("coin", method="svi", seed=2, num_steps=100, progress=False)
    s2 = fit("coin", method="svi", seed=2, num_steps=100, progress=False)
    np.testing.assert_array_equal(s1.samples["p"], s2.samples["p"])


def test_predict_for_new_inputs():
    post = fit("coin", method="map", progress=False)
    draws = post.predict({"N": 7})
    assert draws["flips"].shape == (1, 1, 7)


def test_problems_are_reported_in_words():
    rng = np.random.default_rng(0)
    stuck = np.stack([rng.normal(0, 1, 200), rng.normal(3, 1, 200)])  # two chains that disagree
    diverging = np.zeros((2, 200), dtype=bool)
    diverging[0, :3] = True
    post = Posterior(samples={"theta": stuck}, method="nuts", settings={}, sample_stats={"diverging": diverging})
    text = "\n".join(post.problems())
    assert "3 of 400 transitions diverged" in text
    assert "R-hat" in text and "theta" in text
    healthy = Posterior(samples={"theta": rng.normal(0, 1, (2, 400))}, method="nuts", settings={},
                        sample_stats={"diverging": np.zeros((2, 400), bool)})
    assert healthy.problems() == []
    short = Posterior(samples={"theta": np.cumsum(rng.normal(0, 1, (2, 400)), axis=1)}, method="nuts", settings={})
    assert any("bulk ESS" in p for p in short.problems())


def test_a_one_chain_summary_has_no_r_hat_and_logs_no_shape_error(capfd):
    """SVI's draws are one chain: R-hat is NaN, without ArviZ's "Shape validation failed" line on stderr
    (which reads like an error in `ppl demo`'s output), and the log is as before once the summary is done."""
    import arviz

    draws = np.random.default_rng(0).normal(0, 1, (1, 50))
    post = Posterior(samples={"theta": draws}, method="svi", settings={})
    table = post.summary(round_to="none")
    assert np.isnan(table.loc["theta", "r_hat"]) and table.loc["theta", "mean"] == pytest.approx(draws.mean())
    assert "Shape validation failed" not in capfd.readouterr().err
    if not azc.ARVIZ_1:  # (0.x's own logger writes to stderr; 1.x's is a plain logger with no handler)
        arviz._log.warning("Shape validation failed: outside a summary")  # the filter is gone afterwards
        assert "outside a summary" in capfd.readouterr().err


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(method="bogus"), "method"),
        (dict(method="nuts", num_samples=0), "num_samples"),
        (dict(method="svi", num_chains=2), "num_chains"),
        (dict(method="svi", guide="laplace"), "guide"),
        (dict(method="map", optimizer="sgd"), "optimizer"),
        (dict(method="nuts", lr=0.1), "lr"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(InputError) as err:
        fit("coin", progress=False, **kwargs)
    assert err.value.field == field


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="coin"):
        fit("no_such_model")


def scaled_regression(x=None, y=None):
    """A learned point parameter w (pyro.param) beside a latent noise scale."""
    w = pyro.param("w", torch.tensor(0.0))
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("N", len(y)):
        pyro.sample("y", dist.Normal(w * x, s), obs=y)


def test_a_later_fit_does_not_change_an_earlier_posterior():
    x = torch.linspace(-1, 1, 20)
    first = fit(scaled_regression, {"x": x, "y": 2 * x}, method="svi", num_steps=400, lr=0.05, progress=False)
    w_first = first.param_state["params"]["w"].item()
    fit(scaled_regression, {"x": x, "y": -2 * x}, method="svi", num_steps=400, lr=0.05, progress=False)
    assert w_first > 1.0 and pyro.param("w").item() < -1.0  # the store now holds the second fit's w
    loglik = first.to_arviz(prior=False).log_likelihood["y"].values[0, 0]
    s = first.samples["s"][0, 0]
    expected = stats.norm(w_first * x.numpy(), s).logpdf(2 * x.numpy())
    np.testing.assert_allclose(loglik, expected, rtol=1e-4)
    assert pyro.param("w").item() < -1.0  # and evaluation put the store back


def test_arviz_dims_of_a_site_with_event_dims_name_the_plate_on_the_batch_axis():
    """z (N, 2) in plate N with a 2-d event: the plate is the first axis, the event axis gets its own name."""
    from inference.structure import inspect_model

    def model(x):
        with pyro.plate("N", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    structure = inspect_model(model, {"x": torch.zeros(5, 2)})
    assert structure.dims["z"] == ["N", "z_event"]
    assert structure.dims["x"] == ["N", "x_event"]


def test_a_site_of_many_values_is_one_problem_line_naming_the_worst():
    """A site whose values fail one by one (a horseshoe's hundred scales, an HMM's emission table under
    label switching) is one line per diagnostic: how many of its values, and the worst with its index. It
    was a line per value (the HMM of Pyro's examples/hmm.py model_2 printed 505). A site with one flagged
    value keeps the value's own line."""
    rng = np.random.default_rng(0)
    slow = np.cumsum(rng.normal(size=(2, 300, 50)), axis=1)  # random walks: every value fails both checks
    stuck = np.stack([rng.normal(0, 1, 300), rng.normal(3, 1, 300)])
    post = Posterior(samples={"slow": slow, "theta": stuck}, method="nuts", settings={})
    problems = post.problems()
    about_slow = [p for p in problems if p.startswith("slow")]
    assert len(about_slow) == 2, problems
    rhat, ess = about_slow
    assert rhat.startswith("slow: R-hat above 1.01 in 50 of 50 values, worst ") and "(slow[" in rhat
    assert ess.startswith("slow: bulk ESS below 200 (100 per chain) in 50 of 50 values, worst ")
    worst = max(range(50), key=lambda i: float(az.rhat(slow[..., i])))
    assert f"(slow[{worst}])" in rhat
    assert any(p.startswith("theta: R-hat ") and "> 1.01" in p for p in problems)


def test_the_steps_of_a_sequence_are_one_line():
    """A ``pyro.markov`` loop makes a site per step (``x_0 ... x_29``): the enumeration tutorial's HMM of 30
    steps gave up to 60 problem lines. The steps are grouped as one site, its worst value named."""
    rng = np.random.default_rng(0)
    samples = {f"s_{t}": np.cumsum(rng.normal(size=(2, 300)), axis=1) for t in range(10)}
    samples["b_1"] = np.cumsum(rng.normal(size=(2, 300)), axis=1)  # one numbered name alone: its own line
    problems = Posterior(samples=samples, method="nuts", settings={}).problems()
    rhat = [p for p in problems if "R-hat" in p]
    assert len(rhat) == 2, problems
    assert rhat[0].startswith("s_t, t = 0..9: R-hat above 1.01 in 10 of 10 values, worst "), rhat
    assert rhat[1].startswith("b_1: R-hat "), rhat
    # states each chain kept at every step (no R-hat at all): one line for the sequence too
    samples = {f"k_{t}": np.repeat([[0], [1]], 300, axis=1) for t in range(5)}
    stuck = [p for p in Posterior(samples=samples, method="nuts", settings={}).problems() if "kept one" in p]
    assert stuck == ["k_t, t = 0..4: each chain kept one value throughout in 5 of 5 values, first k_0 (0, 1 in "
                     "chains 0-1), and the chains disagree: they did not mix; run longer or check for multiple "
                     "modes"], stuck


def test_a_discrete_sites_state_rows_are_one_line_with_a_readable_worst_value():
    """A discrete site's summary rows, ``P(x[0, 3]=1)``, group under ``P(x)``; an R-hat of indicator draws
    that are constant within each chain (label switching: 6.1e15 in the HMM of examples/hmm.py model_2)
    prints in three significant digits, not as sixteen."""
    import pandas as pd

    from inference.posterior import _per_site

    rows = [f"P(x[{i}]={k})" for i in range(3) for k in (0, 1)] + ["mu"]
    table = pd.DataFrame({"r_hat": [6.1e15, 6.1e15, 1.0, 1.0, 1.2, 1.2, 1.5]}, index=rows)
    lines = _per_site(table, "r_hat", table["r_hat"] > 1.01, "> 1.01", "above 1.01", "{:.3f}", "chains disagree")
    assert lines == ["P(x): R-hat above 1.01 in 4 of 6 values, worst 6.1e+15 (P(x[0]=0)): chains disagree",
                     "mu: R-hat 1.500 > 1.01: chains disagree"]


def test_draws_constant_within_each_chain_give_a_problem_line_and_no_warnings():
    """An enumerated assignment each chain keeps (a mixture whose chains settle in different labellings)
    has no within-chain variance: ArviZ's R-hat warned "invalid value encountered in sqrt" once per value,
    a flood under the problem lines. The R-hat is NaN, which no "R-hat above" rule sees, so the stuck
    chains get a line of their own; a value every chain holds alike (a certain assignment) gets none."""
    import warnings

    z = np.zeros((4, 200, 3), dtype=np.int64)
    z[1, :, :2] = z[3, :, :2] = 1  # z[2] is 0 in every chain: stuck alike, not a problem
    locs = np.random.default_rng(0).normal(size=(4, 200, 2))
    post = Posterior(samples={"z": z, "locs": locs}, method="nuts", settings={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = post.problems()
    assert [str(w.message) for w in caught] == []
    assert ("z: each chain kept one value throughout in 2 of 3 values, first z[0] (0, 1, 0, 1 in chains 0-3), "
            "and the chains disagree: they did not mix; run longer or check for multiple modes") in problems
    assert any(p.startswith("z: bulk ESS below 400") for p in problems), problems
    assert not any("kept one value" in p for p in Posterior(samples={"z": z[[0, 2]]}, method="nuts",
                                                                settings={}).problems())
    z[1, 5, 0] = 0  # chain 1 moved once: no longer stuck throughout; its R-hat now has a value
    one = [p for p in Posterior(samples={"z": z}, method="nuts", settings={}).problems() if "kept one" in p]
    assert one == ["z[1]: each chain kept one value throughout (0, 1, 0, 1 in chains 0-3), and the chains "
                   "disagree: they did not mix; run longer or check for multiple modes"], one


def test_rhat_rule_reads_the_raw_value_not_arviz_rounding():
    """ArviZ's summary rounds R-hat to two decimals: 1.014 read as 1.01 (not flagged, while the report's
    cell for the raw value was red) and 1.0171 as 1.02. problems() tests and prints the raw value."""
    import arviz as az

    from inference.posterior import RHAT_LIMIT, Posterior

    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 2000))
    found = None
    for shift in np.linspace(0.0, 0.4, 401):
        draws = base + np.array([[0.0], [shift]])
        raw = float(az.rhat(draws))
        if 1.011 < raw < 1.015:  # rounds to 1.01: not above the limit once rounded
            found = draws, raw
            break
    assert found is not None
    draws, raw = found
    post = Posterior(samples={"x": draws}, method="nuts", settings={})
    flagged = [p for p in post.problems() if p.startswith("x: R-hat")]
    assert raw > RHAT_LIMIT and flagged and f"{raw:.3f}" in flagged[0]
    calm = Posterior(samples={"x": base}, method="nuts", settings={})
    assert not [p for p in calm.problems() if "R-hat" in p]
