"""The fast (batched) NUTS/HMC backend: oracles for the potential, the sampler and the whole `fit` path.

Correctness guards (as the issue states them): on the coin (exact Beta posterior) and on kidiq (Stan's
reference posterior), means within 4 Monte-Carlo standard errors, sds within 10 %, R-hat < 1.01 over 4
chains; the same seed gives the same draws.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.mcmc.util import initialize_model

from inference import fit
from inference.fast.adaptation import ADAPTATIONS, WindowedCovariance, adaptation_windows
from inference.fast.compile import ahead_of_time_available
from inference.fast.sampler import run_chains
from inference.fast.tree import leaf_checkpoints
from inference.mcmc import STAT_NAMES
from inference.fast.potential import Potential, is_numerical_failure
from inference.structure import inspect_model


def _shared_posteriordb() -> Path | None:
    for root in (Path(__file__).resolve().parents[1] / ".." / "shared", Path("/work/shared")):
        if (root / "data" / "posteriordb").is_dir():
            return root / "data" / "posteriordb"
    return None


def regression(X, y):
    coef = pyro.sample("coef", dist.Normal(0.0, 1.0).expand([X.shape[-1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("N", X.shape[0]):
        pyro.sample("y", dist.Normal((X * coef).sum(-1), sigma), obs=y)


COIN = {"flips": [1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "alpha": 2.0, "beta": 2.0}  # posterior Beta(9, 5)


def _check_against(post, reference: dict[str, tuple[float, float, float]]) -> None:
    """means within 4 MCSE (the reference's own MC error added in quadrature), sds within 10 %, R-hat < 1.01."""
    idata = az.from_dict(posterior={k: v for k, v in _scalars(post.samples).items() if k in reference})
    mcse = az.mcse(idata)
    rhat = az.rhat(idata)
    for name, (mean, sd, ref_se) in reference.items():
        draws = idata.posterior[name].values
        se = math.hypot(float(mcse[name]), ref_se)
        assert abs(draws.mean() - mean) < 4 * se, (name, draws.mean(), mean, se)
        assert abs(draws.std() / sd - 1) < 0.10, (name, draws.std(), sd)
        assert float(rhat[name]) < 1.01, (name, float(rhat[name]))


def _scalars(samples):
    out = {}
    for k, v in samples.items():
        if v.ndim == 2:
            out[k] = v
        else:
            for i in range(v.shape[-1]):
                out[f"{k}[{i + 1}]"] = v[..., i]
    return out


# ---- pieces ---------------------------------------------------------------------------------------------
def test_checkpoint_indices_follow_numpyro():
    # NumPyro's comments: 6 -> (3, 2) (no check), 7 -> (0, 2), 13 -> (2, 2)
    assert leaf_checkpoints(6) == (3, 2)
    assert leaf_checkpoints(7) == (0, 2)
    assert leaf_checkpoints(13) == (2, 2)
    assert leaf_checkpoints(1) == (0, 0)


def test_adaptation_windows_match_stan():
    assert adaptation_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert adaptation_windows(100) == [(15, 90)]  # short warm-up: 15 % / 75 % / 10 %
    assert adaptation_windows(10) == []


def test_batched_potential_matches_pyro_potential_fn():
    """U and dU/dz against Pyro's own `initialize_model` potential, chain by chain."""
    torch.manual_seed(0)
    X, y = torch.randn(30, 3), torch.randn(30)
    structure = inspect_model(regression, {"X": X, "y": y})
    pot = Potential(regression, {"X": X, "y": y}, structure, num_chains=5)
    _, potential_fn, transforms, _ = initialize_model(regression, model_kwargs={"X": X, "y": y})
    z = torch.randn(5, pot.dim)
    U, grad = pot.value_and_grad(z)
    for c in range(5):
        params = {s.name: z[c, s.offset:s.offset + s.size].reshape(s.unconstrained).clone().requires_grad_()
                  for s in pot.sites}
        ref = potential_fn(params)
        grads = torch.autograd.grad(ref, list(params.values()))
        assert torch.allclose(U[c], ref, rtol=1e-5, atol=1e-4)
        assert torch.allclose(grad[c], torch.cat([g.reshape(-1) for g in grads]), rtol=1e-4, atol=1e-4)
    assert pot.compile([z]) and pot.compiled
    U2, grad2 = pot.value_and_grad(z)
    assert torch.allclose(U2, U, rtol=1e-5) and torch.allclose(grad2, grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("adaptation", ADAPTATIONS)
@pytest.mark.parametrize("full_mass", [False, True])
def test_sampler_on_a_correlated_gaussian(full_mass, adaptation):
    """The batched NUTS alone, on N(m, S) with correlation 0.9 and scales 1 and 10: mean within 4 MCSE,
    variances within 10 %; with every warm-up of `ADAPTATIONS`."""
    m = torch.tensor([1.0, -3.0], dtype=torch.float64)
    S = torch.tensor([[1.0, 0.9 * 10], [0.9 * 10, 100.0]], dtype=torch.float64)
    P = torch.linalg.inv(S)

    def value_and_grad(z):
        d = z - m
        return 0.5 * ((d @ P) * d).sum(-1), d @ P

    gen = torch.Generator().manual_seed(3)
    z0 = torch.rand(4, 2, generator=gen, dtype=torch.float64) * 4 - 2
    draws, stats = run_chains(value_and_grad, z0, num_samples=1000, num_warmup=500, full_mass=full_mass,
                              generator=gen, adaptation=adaptation)
    assert set(stats) == set(STAT_NAMES) and stats["n_steps"].shape == (4, 1000)
    step_sizes = stats["step_size"][:, -1]
    assert (np.ptp(step_sizes) == 0) == (adaptation == "pooled"), step_sizes  # pooled: one step for every chain
    d = draws.numpy()
    idata = az.from_dict(posterior={"x0": d[..., 0], "x1": d[..., 1]})
    mcse, rhat = az.mcse(idata), az.rhat(idata)
    for i, name in enumerate(("x0", "x1")):
        assert abs(d[..., i].mean() - float(m[i])) < 4 * float(mcse[name])
        assert abs(d[..., i].var() / float(S[i, i]) - 1) < 0.1
        assert float(rhat[name]) < 1.01
    assert abs(np.corrcoef(d[..., 0].ravel(), d[..., 1].ravel())[0, 1] - 0.9) < 0.03
    assert not stats["diverging"].any()


def test_pooled_metric_gives_a_chain_in_a_narrower_place_a_shorter_step():
    """Chains whose targets differ in scale (N(0, 1) for two, N(0, 4^2) for the other two: what chains in the
    neck and the mouth of a funnel see) share one metric under ``"pooled"`` and ``"pooled metric"``; only
    ``"pooled metric"`` then gives the narrow chains a shorter step (by about the ratio of scales, 4: more
    than 2 is asked), and only ``"per chain"`` gives each chain a metric of its own (steps within 1.5x).
    Every chain's draws have its own target's variance (within 15 %) under all three."""
    scales = torch.tensor([1.0, 1.0, 4.0, 4.0], dtype=torch.float64)[:, None]

    def value_and_grad(z):
        return 0.5 * ((z / scales) ** 2).sum(-1), z / scales ** 2

    steps = {}
    for adaptation in ADAPTATIONS:
        gen = torch.Generator().manual_seed(0)
        z0 = torch.randn(4, 1, generator=gen, dtype=torch.float64)
        draws, stats = run_chains(value_and_grad, z0, num_samples=1000, num_warmup=500, generator=gen,
                                  adaptation=adaptation)
        variances = draws[..., 0].var(1)
        assert torch.allclose(variances, scales[:, 0] ** 2, rtol=0.15), (adaptation, variances)
        steps[adaptation] = stats["step_size"][:, -1]
    narrow, wide = steps["pooled metric"][:2], steps["pooled metric"][2:]
    assert wide.min() > 2 * narrow.max(), steps
    assert np.ptp(steps["pooled"]) == 0
    assert steps["per chain"].max() < 1.5 * steps["per chain"].min(), steps


@pytest.mark.parametrize("dense", [False, True])
def test_pooled_metric_is_the_mean_within_chain_covariance(dense):
    """Pooled, the metric is the chains' within-chain covariance averaged, for every chain: chains sitting
    at different means (two modes, say) do not inflate it, as pooling their draws would."""
    gen = torch.Generator().manual_seed(0)
    C, D, n = 4, 2, 4000
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, -5.0]], dtype=torch.float64)
    scales = torch.tensor([1.0, 2.0, 1.0, 2.0], dtype=torch.float64)  # per chain; the mean variance is 2.5
    estimator = WindowedCovariance(C, D, dense, torch.float64, pooled=True)
    per_chain = WindowedCovariance(C, D, dense, torch.float64)
    for _ in range(n):
        z = centres + scales[:, None] * torch.randn(C, D, generator=gen, dtype=torch.float64)
        estimator.add(z)
        per_chain.add(z)
    pooled = estimator.inverse_mass()
    variances = torch.diagonal(pooled, dim1=-2, dim2=-1) if dense else pooled
    assert torch.equal(pooled, pooled[:1].expand_as(pooled))                   # the same for every chain
    assert torch.allclose(variances, torch.full_like(variances, 2.5), rtol=0.05)  # not ~ 2.5 + 12.5
    own = torch.diagonal(per_chain.inverse_mass(), dim1=-2, dim2=-1) if dense else per_chain.inverse_mass()
    assert torch.allclose(own, (scales ** 2)[:, None].expand_as(own), rtol=0.08)  # per chain: each its own


# ---- the guards through fit ------------------------------------------------------------------------------
@pytest.mark.slow
def test_coin_exact_posterior_fast_nuts():
    post = fit("coin", data=COIN, method="nuts", seed=1, progress=False)
    assert any("fast backend" in n for n in post.notes)
    a, b = 9.0, 5.0
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    _check_against(post, {"p": (a / (a + b), sd, 0.0)})
    stats = post.to_arviz(prior=False, predictive=False).sample_stats
    assert set(STAT_NAMES) <= set(stats.data_vars)
    assert stats["diverging"].shape == (4, 1000)


@pytest.mark.slow
def test_kidiq_matches_stan_reference():
    root = _shared_posteriordb()
    if root is None:
        pytest.skip("../shared/data/posteriordb is absent (reference posteriors ship only beside the repository)")
    folder = root / "kidiq-kidscore_momiq"
    data = json.loads((folder / "data.json").read_text())
    summary = json.loads((folder / "reference.json").read_text())["summary"]
    n_ref = 10 * 1000  # 10 chains x 1000 draws; Stan's ESS is near that: the reference's own MC error
    reference = {k: (v["mean"], v["sd"], v["sd"] / math.sqrt(n_ref)) for k, v in summary.items()}
    tensors = {"mom_iq": torch.tensor(data["mom_iq"], dtype=torch.float32),
               "kid_score": torch.tensor(data["kid_score"], dtype=torch.float32)}
    # the defaults (dense metric for 3 dimensions, warm start at the mode): beta[1] and beta[2] correlate
    # at -0.99; the warm-up is shortened to keep the test short
    post = fit(kidiq_flat, data=tensors, method="nuts", seed=0, num_warmup=500, progress=False)
    assert any("fast backend" in n and "dense mass matrix" in n for n in post.notes), post.notes
    assert any("curvature at the mode" in n for n in post.notes), post.notes
    _check_against(post, reference)


def kidiq_flat(mom_iq, kid_score):
    """kid_score ~ Normal(beta[1] + beta[2] mom_iq, sigma); flat prior on beta, sigma ~ HalfCauchy(2.5)."""
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1).mask(False))
    sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
    with pyro.plate("N", mom_iq.shape[0]):
        pyro.sample("kid_score", dist.Normal(beta[..., 0] + beta[..., 1] * mom_iq, sigma), obs=kid_score)


@pytest.mark.slow
def test_coin_exact_posterior_fast_hmc():
    post = fit("coin", data=COIN, method="hmc", seed=2, num_samples=1000, num_warmup=500, progress=False)
    assert any("fast backend" in n for n in post.notes)
    draws = post.samples["p"]
    mcse = float(az.mcse(az.from_dict(posterior={"p": draws}))["p"])
    assert abs(draws.mean() - 9 / 14) < 4 * mcse
    assert "tree_depth" not in post.sample_stats


def test_same_seed_same_draws():
    kw = dict(data=COIN, method="nuts", num_chains=2, num_samples=50, num_warmup=50, progress=False)
    a, b, c = fit("coin", seed=5, **kw), fit("coin", seed=5, **kw), fit("coin", seed=6, **kw)
    np.testing.assert_array_equal(a.samples["p"], b.samples["p"])
    np.testing.assert_array_equal(a.sample_stats["n_steps"], b.sample_stats["n_steps"])
    assert not np.array_equal(a.samples["p"], c.samples["p"])


def test_a_model_that_does_not_broadcast_is_vectorised():
    """``A @ mu`` fails under an outer chain plate; its one-chain graph vectorised runs on the fast path."""
    def matmul_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with pyro.plate("N", 3):
            pyro.sample("y", dist.Normal(torch.ones(3, 2) @ mu, 1.0), obs=y)

    post = fit(matmul_model, data={"y": [0.1, 0.2, 0.3]}, method="nuts", num_chains=2, num_samples=5, num_warmup=5,
               progress=False)
    assert not any("unavailable" in n for n in post.notes)
    assert any("(vectorised)" in n for n in post.notes)
    assert post.samples["mu"].shape == (2, 5, 2)


def test_control_flow_on_a_latent_value_falls_back_to_pyro_in_one_line():
    """A branch on a latent value cannot be recorded once for every point: Pyro's kernels run it, and the
    note says why in one line (no pasted trace)."""
    def branching(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        scale = 1.0 if float(mu) > 0 else 2.0
        with pyro.plate("N", 3):
            pyro.sample("y", dist.Normal(mu, scale), obs=y)

    post = fit(branching, data={"y": [0.1, 0.2, 0.3]}, method="nuts", num_chains=2, num_samples=5, num_warmup=5,
               progress=False)
    fallback = [n for n in post.notes if "fast backend unavailable" in n]
    assert len(fallback) == 1 and "\n" not in fallback[0] and len(fallback[0]) < 300, fallback
    assert post.samples["mu"].shape == (2, 5)


def test_enumerated_sites_are_summed_out_per_chain():
    """A model with an enumerated discrete site runs on the fast backend: its batched potential is the
    closed-form marginal, log Beta(w) + sum_i log(w N(x_i | 3, 1) + (1 - w) N(x_i | 0, 1)) + log|J|, chain by
    chain, and Pyro's own (unbatched) marginalisation agrees; z is then drawn given each draw of w."""

    def mixture(x):
        weight = pyro.sample("weight", dist.Beta(2.0, 3.0))
        with pyro.plate("N", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(weight))
            pyro.sample("x", dist.Normal(z * 3.0, 1.0), obs=x)

    x = torch.tensor([0.1, 3.2, -0.3, 2.9, 1.4])
    pot = Potential(mixture, {"x": x}, inspect_model(mixture, {"x": x}), num_chains=3)
    z = torch.tensor([[-1.0], [0.2], [2.0]])  # unconstrained: w = sigmoid(z)
    w = torch.sigmoid(z[:, 0])
    normal = torch.distributions.Normal
    exact = (dist.Beta(2.0, 3.0).log_prob(w) + torch.log(w * torch.sigmoid(-z[:, 0]))
             + torch.logaddexp(torch.log(w)[:, None] + normal(3.0, 1.0).log_prob(x),
                               torch.log1p(-w)[:, None] + normal(0.0, 1.0).log_prob(x)).sum(-1))
    torch.testing.assert_close(pot.log_density(z), exact, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pot.reference_log_density(z), exact, rtol=1e-5, atol=1e-5)

    post = fit(mixture, data={"x": x}, method="nuts", num_chains=2, num_samples=10, num_warmup=10, progress=False)
    assert any("compiled leapfrog step and trajectory" in n for n in post.notes), post.notes
    assert post.samples["z"].shape == (2, 10, 5)


def test_backend_option_is_checked():
    from inference import InputError

    with pytest.raises(InputError, match="backend"):
        fit("coin", data=COIN, method="nuts", backend="stan", progress=False)


# ---- a chain at a point where the model's linear algebra fails -------------------------------------------
def correlation(x):
    """rho ~ Uniform(-2, 2), x_i ~ N(0, [[1, rho], [rho, 1]]): for |rho| >= 1 the covariance is not positive
    definite and its Cholesky factor raises, so the posterior lives on (-1, 1) only by failures."""
    rho = pyro.sample("rho", dist.Uniform(-2.0, 2.0))
    one = torch.ones_like(rho)
    cov = torch.stack([torch.stack([one, rho], -1), torch.stack([rho, one], -1)], -2)
    with pyro.plate("N", x.shape[0]):
        pyro.sample("x", dist.MultivariateNormal(torch.zeros(2), covariance_matrix=cov), obs=x)


def _correlated_points(n: int = 40, rho: float = 0.6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    L = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    return torch.randn(n, 2, generator=gen) @ L.T


def test_a_failing_chain_gets_infinite_energy_and_the_others_their_values():
    x = _correlated_points()
    structure = inspect_model(correlation, {"x": x})
    pot = Potential(correlation, {"x": x}, structure, num_chains=3)
    # unconstrained z -> rho = 4 sigmoid(z) - 2: z = 0 gives rho = 0, z = 3 gives rho = 1.81 (not PD)
    z = torch.tensor([[0.0], [3.0], [0.5]])
    with pytest.raises(torch.linalg.LinAlgError):
        pot.eager(z)  # the batch as a whole fails
    U, grad = pot.value_and_grad(z)
    assert math.isinf(float(U[1])) and float(grad[1].abs().sum()) == 0
    reference = -pot.reference_log_density(z[[0, 2]])
    assert torch.allclose(U[[0, 2]], reference, rtol=1e-5)
    assert torch.isfinite(grad[[0, 2]]).all()


def test_compiled_steps_with_a_failing_chain_are_the_eager_ones():
    """`correlation`'s density has a Cholesky factor; compiled, its error check is a flag the callers read
    (`graph_passes.checks_as_output`). Where one chain's step leaves the positive-definite region, the
    compiled potential, the compiled leaf and the scripted tree give what the eager code gives: that chain
    gets U = inf (a divergence), the others their own values."""
    from inference.fast.sampler import probe_state
    from inference.fast.tree import Leaf, Metric, NUTSKernel, leaf_step

    x = _correlated_points()
    pot = Potential(correlation, {"x": x}, inspect_model(correlation, {"x": x}), num_chains=3)
    gen = torch.Generator().manual_seed(0)
    z = torch.tensor([[0.0], [2.9], [0.5]])  # rho = 4 sigmoid(z) - 2: 0, 1.79 (fails), 0.49
    inside = torch.tensor([[0.0], [0.2], [0.5]])
    assert pot.compile([inside, inside + 0.1])
    U, grad = pot.value_and_grad(z)
    assert math.isinf(float(U[1])) and torch.equal(U, pot.per_chain(z)[0])

    U, grad = pot.eager(inside)
    leaf = Leaf(pot.eager, robust=pot.value_and_grad, is_failure=is_numerical_failure)
    assert leaf.compile([probe_state(inside, U, grad, torch.ones(3, 1), gen, 6) for _ in range(2)])
    assert leaf.checked
    state, subtree, leaf_input = probe_state(inside, U, grad, torch.ones(3, 1), gen, 6)
    state = state._replace(r=torch.tensor([[0.0], [30.0], [0.0]]),  # chain 1's momentum carries it past rho = 1
                           active=torch.ones(3, dtype=torch.bool))  # every chain active
    subtree = subtree._replace(step=torch.full((3, 1), 0.1))
    assert bool(leaf.compiled.run(state, subtree, leaf_input)[1])  # the compiled step flags the failure ...
    got, want = leaf(state, subtree, leaf_input), leaf_step(pot.value_and_grad, state, subtree, leaf_input)
    assert all(torch.equal(a, b) for a, b in zip(got, want))  # ... and the leaf gives the eager step's result
    assert bool(got.diverging[1]) and not bool(got.diverging[[0, 2]].any())  # chain 1 alone diverged

    metric = Metric(torch.ones(3, 1))
    kernel = NUTSKernel(leaf, 6, 3, 1, z.dtype)
    step = torch.full((3, 1), 0.9)
    assert kernel.compile_tree(metric, inside, U, grad, step, gen) and kernel.scripted, kernel.why_not_scripted
    python_kernel = NUTSKernel(Leaf(pot.eager, robust=pot.value_and_grad, is_failure=is_numerical_failure),
                               6, 3, 1, z.dtype)
    zc, Uc, gc = inside, U, grad
    divergences = 0
    for _ in range(20):
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        a = kernel.transition(metric, zc, Uc, gc, step, torch.Generator().manual_seed(seed))
        b = python_kernel.transition(metric, zc, Uc, gc, step, torch.Generator().manual_seed(seed))
        assert torch.equal(a.n_steps, b.n_steps) and torch.equal(a.diverging, b.diverging)
        assert torch.allclose(a.z, b.z, rtol=1e-4, atol=1e-5)
        divergences += int(a.diverging.sum())
        zc, Uc, gc = a.z, a.U, a.grad
    assert divergences > 0  # trajectories did run into the failing region


@pytest.mark.slow
def test_posterior_bounded_by_failures_matches_quadrature():
    """fit's fast NUTS on `correlation` against 20,001-point quadrature of the exact posterior on (-1, 1):
    chains that step outside diverge there instead of stopping the run."""
    x = _correlated_points().double()
    grid = torch.linspace(-1, 1, 20_003, dtype=torch.float64)[1:-1]
    sxx, syy, sxy = (x[:, 0] ** 2).sum(), (x[:, 1] ** 2).sum(), (x[:, 0] * x[:, 1]).sum()
    det = 1 - grid ** 2
    log_post = -0.5 * len(x) * torch.log(det) - 0.5 * (sxx + syy - 2 * grid * sxy) / det
    w = torch.softmax(log_post, 0)
    mean = float((w * grid).sum())
    sd = float((w * (grid - mean) ** 2).sum().sqrt())
    post = fit(correlation, data={"x": x.float()}, method="nuts", seed=2, num_chains=4, num_samples=1000,
               num_warmup=500, progress=False)
    assert "fast backend" in post.notes[0]
    assert (np.abs(post.samples["rho"]) < 1).all()
    _check_against(post, {"rho": (mean, sd, 0.0)})


# ---- the warm start and the automatic metric -------------------------------------------------------------
def _gaussian_potential(m, S):
    P = torch.linalg.inv(S)

    def value_and_grad(z):
        d = z - m
        return 0.5 * ((d @ P) * d).sum(-1), d @ P

    return value_and_grad


def test_laplace_start_recovers_a_gaussian_exactly():
    """On a Gaussian the Laplace approximation is exact: mode m, inverse Hessian S (diagonal: S's diagonal)."""
    from inference.warm_start import curvature_metric, laplace

    m = torch.tensor([1.0, -3.0, 20.0], dtype=torch.float64)
    S = torch.tensor([[1.0, 9.0, 0.0], [9.0, 100.0, 0.0], [0.0, 0.0, 1e-4]], dtype=torch.float64)
    approx, how = laplace(_gaussian_potential(m, S), torch.zeros(3, dtype=torch.float64))
    assert how == "mode found"
    torch.testing.assert_close(approx.mode, m, rtol=0, atol=1e-5)
    torch.testing.assert_close(approx.covariance, S, rtol=1e-4, atol=1e-9)
    dense, _ = curvature_metric(_gaussian_potential(m, S), torch.zeros(4, 3, dtype=torch.float64), dense=True)
    diag, _ = curvature_metric(_gaussian_potential(m, S), torch.zeros(4, 3, dtype=torch.float64), dense=False)
    assert dense.shape == (4, 3, 3) and diag.shape == (4, 3)
    torch.testing.assert_close(diag[2], torch.diagonal(S), rtol=1e-4, atol=1e-9)
    assert approx.max_abs_correlation() == pytest.approx(0.9, abs=1e-3)  # S's coordinates 0 and 1
    assert approx.correlation_condition() == pytest.approx((1 + 0.9) / (1 - 0.9), rel=1e-3)  # eigenvalues 1.9, 1, 0.1


def test_warm_start_falls_back_to_the_identity_where_there_is_no_mode():
    """U = z_0^2 / 2 - z_1 decreases without bound along z_1 (an improper direction): no mode, no metric."""
    from inference.warm_start import curvature_metric

    def value_and_grad(z):
        U = 0.5 * z[:, 0] ** 2 - z[:, 1]
        return U, torch.stack([z[:, 0], -torch.ones_like(z[:, 1])], -1)

    metric, why = curvature_metric(value_and_grad, torch.zeros(2, 2, dtype=torch.float64), dense=False)
    assert metric is None and ("boundary" in why or "no finite mode" in why), why


@pytest.mark.slow
def test_warm_started_sampler_on_a_badly_scaled_gaussian():
    """Scales 100 and 0.01 with correlation 0.95: the batched sampler from the Laplace metric gets the
    moments right (means within 4 MCSE, variances within 10 %) and its first window needs far fewer
    leapfrog steps than from the identity."""
    from inference.warm_start import curvature_metric

    m = torch.tensor([50.0, 0.6], dtype=torch.float64)
    S = torch.tensor([[1e4, 0.95], [0.95, 1e-4]], dtype=torch.float64)
    potential = _gaussian_potential(m, S)
    counted = {"calls": 0}

    def counting(z):
        counted["calls"] += 1
        return potential(z)

    gen = torch.Generator().manual_seed(0)
    z0 = torch.rand(4, 2, generator=gen, dtype=torch.float64) * 4 - 2
    metric, _ = curvature_metric(potential, z0, dense=True)
    draws, stats = run_chains(potential, z0, num_samples=800, num_warmup=300, full_mass=True, generator=gen,
                              initial_inverse_mass=metric)
    d = draws.numpy()
    idata = az.from_dict(posterior={"x0": d[..., 0], "x1": d[..., 1]})
    mcse = az.mcse(idata)
    for i, name in enumerate(("x0", "x1")):
        assert abs(d[..., i].mean() - float(m[i])) < 4 * float(mcse[name])
        assert abs(d[..., i].var() / float(S[i, i]) - 1) < 0.1

    def warm_up_cost(initial_inverse_mass):  # gradient evaluations of 50 warm-up iterations, trees capped
        counted["calls"] = 0
        run_chains(counting, z0, num_samples=1, num_warmup=50, full_mass=True, max_tree_depth=7,
                   generator=torch.Generator().manual_seed(1), initial_inverse_mass=initial_inverse_mass)
        return counted["calls"]

    warm, cold = warm_up_cost(metric), warm_up_cost(None)
    assert warm < cold / 4, (warm, cold)


def test_default_metric_is_dense_for_small_models_and_diagonal_for_larger_ones():
    def wide(y, D=12):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([D]).to_event(1))
        with pyro.plate("N", y.shape[0]):
            pyro.sample("y", dist.Normal(mu.sum(-1, keepdim=True), 1.0).to_event(1), obs=y)

    kw = dict(method="nuts", num_chains=2, num_samples=20, num_warmup=20, progress=False)
    # two coefficients seen only through their sum: correlation -0.97 at the mode
    small = fit(wide, data={"y": torch.zeros(30, 1), "D": 2}, **kw)
    large = fit(wide, data={"y": torch.zeros(3, 1)}, **kw)
    one = fit("coin", data=COIN, **kw)  # in one dimension the two are the same metric: the cheaper one
    # small but uncorrelated (each coefficient observed on its own): nothing for a dense metric to capture
    uncorrelated = fit(regression, data={"X": torch.eye(3).repeat(10, 1), "y": torch.zeros(30)}, **kw)
    assert any("dense mass matrix" in n for n in small.notes), small.notes
    assert any("diagonal mass matrix" in n for n in large.notes), large.notes
    assert any("diagonal mass matrix" in n for n in one.notes), one.notes
    assert any("diagonal mass matrix" in n for n in uncorrelated.notes), uncorrelated.notes
    forced = fit("coin", data=COIN, full_mass=False, warm_start=False, **kw)
    assert any("diagonal mass matrix" in n for n in forced.notes)
    assert not any("curvature" in n for n in forced.notes)


# ---- the compiled trajectory ----------------------------------------------------------------------------
def _regression_potential() -> Potential:
    """The batched potential of `regression` (3 coefficients and a scale) on 30 rows, for 4 chains."""
    X = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    data = {"X": X, "y": X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(30)}
    return Potential(regression, data, inspect_model(regression, data), num_chains=4)


def _assert_same_transitions(kernel, reference, metric, z, U, grad, step, gen, count: int = 15) -> None:
    """`kernel` against `reference` on the same draws, `count` transitions from (z, U, grad): the same step
    counts, depths and divergences, the same proposals and acceptance to float tolerance; trees of more than
    one depth among them."""
    depths = []
    for _ in range(count):
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        a = kernel.transition(metric, z, U, grad, step, torch.Generator().manual_seed(seed))
        b = reference.transition(metric, z, U, grad, step, torch.Generator().manual_seed(seed))
        assert torch.equal(a.n_steps, b.n_steps) and torch.equal(a.tree_depth, b.tree_depth)
        assert torch.equal(a.diverging, b.diverging)
        assert torch.allclose(a.z, b.z, rtol=1e-4, atol=1e-5) and torch.allclose(a.accept_prob, b.accept_prob,
                                                                                   rtol=1e-4, atol=1e-5)
        depths.append(a.tree_depth)
        z, U, grad = a.z, a.U, a.grad
    assert len(set(torch.cat(depths).tolist())) > 1  # trees of different depths were compared


@pytest.mark.parametrize("full_mass", [False, True])
def test_compiled_trajectory_is_the_python_tree(full_mass):
    """The TorchScript tree (compiled leaf inside) against the plain-Python `TreeBuilder` on the same draws:
    the same proposals, step counts, depths and divergences, transition after transition."""
    from inference.fast.sampler import probe_state
    from inference.fast.tree import Leaf, Metric, NUTSKernel

    pot = _regression_potential()
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(4, pot.dim, generator=gen)
    U, grad = pot.value_and_grad(z)
    D = pot.dim
    inverse_mass = (torch.eye(D) * 0.05).expand(4, D, D).clone() if full_mass else torch.full((4, D), 0.05)
    metric = Metric(inverse_mass)
    leaf = Leaf(pot.eager, robust=pot.value_and_grad)
    assert leaf.compile([probe_state(z, U, grad, inverse_mass, gen, 6) for _ in range(2)])
    kernel = NUTSKernel(leaf, 6, 4, D, z.dtype)
    step = torch.full((4, 1), 0.3)
    assert kernel.compile_tree(metric, z, U, grad, step, gen) and kernel.scripted, kernel.why_not_scripted
    python_kernel = NUTSKernel(Leaf(pot.eager, robust=pot.value_and_grad), 6, 4, D, z.dtype)
    _assert_same_transitions(kernel, python_kernel, metric, z, U, grad, step, gen)


@pytest.mark.skipif(not ahead_of_time_available(), reason="no C++ compiler for AOTInductor")
def test_ahead_of_time_leaf_in_the_python_tree_is_the_eager_tree(tmp_path, monkeypatch):
    """The leaf step compiled by AOTInductor, grown leaf by leaf on flat tensors (`FlatTreeBuilder`), against
    the eager leaf in the plain-Python `TreeBuilder` on the same draws: the same proposals, step counts,
    depths and divergences, transition after transition; the package is then loaded from the cache."""
    from inference.fast.sampler import probe_state
    from inference.fast.tree import FlatTreeBuilder, Leaf, Metric, NUTSKernel, TreeBuilder

    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path))
    pot = _regression_potential()
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(4, pot.dim, generator=gen)
    U, grad = pot.value_and_grad(z)
    D = pot.dim
    metric = Metric(torch.full((4, D), 0.05))
    examples = [probe_state(z, U, grad, metric.inverse_mass, gen, 6) for _ in range(2)]
    leaf = Leaf(pot.eager, robust=pot.value_and_grad, compiler="inductor")
    assert leaf.compile(examples), leaf.why_not
    assert len(list(tmp_path.glob("*.pt2"))) == 1
    kernel = NUTSKernel(leaf, 6, 4, D, z.dtype)
    assert type(kernel.python_tree) is FlatTreeBuilder
    assert not kernel.compile_tree(metric, z, U, grad, torch.full((4, 1), 0.3), gen)  # (no TorchScript loop)
    eager_kernel = NUTSKernel(Leaf(pot.eager, robust=pot.value_and_grad), 6, 4, D, z.dtype)
    assert type(eager_kernel.python_tree) is TreeBuilder
    step = torch.full((4, 1), 0.3)
    _assert_same_transitions(kernel, eager_kernel, metric, z, U, grad, step, gen)
    assert leaf.evaluations > 15
    # a second leaf of the same graph loads the package the first one wrote
    again = Leaf(pot.eager, robust=pot.value_and_grad, compiler="inductor")
    before = set(tmp_path.iterdir())
    assert again.compile(examples), again.why_not
    assert set(tmp_path.iterdir()) == before  # (nothing written: no temporary, no second package)


def test_step_size_search_through_the_compiled_leaf_is_the_eager_one():
    """Stan's step-size heuristic runs its leapfrog steps through the compiled leaf when there is one: the
    same step sizes as through the eager gradient, from the same momentum."""
    from inference.fast.adaptation import find_reasonable_step_size
    from inference.fast.sampler import probe_state
    from inference.fast.tree import Integrator, Leaf, Metric

    pot = _regression_potential()
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, pot.dim, generator=gen)
    U, grad = pot.value_and_grad(z)
    inverse_mass = torch.rand(4, pot.dim, generator=gen) + 0.05
    leaf = Leaf(pot.eager, robust=pot.value_and_grad)
    assert leaf.compile([probe_state(z, U, grad, inverse_mass, gen, 6) for _ in range(2)])
    integrator = Integrator(pot.value_and_grad, Metric(inverse_mass))
    start = torch.tensor([[1e-3], [0.1], [1.0], [30.0]])
    compiled = find_reasonable_step_size(integrator, z, U, grad, start, torch.Generator().manual_seed(1), leaf)
    eager = find_reasonable_step_size(integrator, z, U, grad, start, torch.Generator().manual_seed(1))
    assert torch.equal(compiled, eager), (compiled, eager)
    assert len(set(compiled.flatten().tolist())) > 1


@pytest.mark.parametrize("name", ["coin", "factor_analysis", "softmax_regression", "two_class", "gmm",
                                  "coin_mixture"])
def test_fit_reports_the_compiled_trajectory(name):
    """Every catalogue model on the fast backend runs compiled: factor analysis's density has a Cholesky
    factor, whose error check tracing would drop (compiled as a flag, see the test above); the softmax
    regression checks its labels and the two-class model standardises its covariate, reading numbers from
    the data inside the model (recorded as constants); the mixtures' assignments are summed out."""
    post = fit(name, method="nuts", num_chains=2, num_samples=10, num_warmup=10, progress=False)
    assert any("compiled leapfrog step and trajectory" in n for n in post.notes), post.notes


# ---- ahead of time --------------------------------------------------------------------------------------
def test_the_ahead_of_time_rule_compiles_long_runs_of_large_steps_only():
    """`compile.ahead_of_time_pays` on the sizes measured: the horseshoe (188 operations, some 450 leaves a
    transition) and the HMM (1,746 operations, 40 leaves: the batch's, its longest chain's) pay for their
    compile; the coin (113 operations, 3 leaves) and eight schools (about 100 operations, 15 leaves) do not;
    nor does a short run, nor the HMM at 10 leaves a transition (a saving of 27 s for a compile of 34)."""
    from inference.fast.compile import ahead_of_time_pays

    assert ahead_of_time_pays(188, 450, 950)
    assert ahead_of_time_pays(1746, 40, 950)
    assert not ahead_of_time_pays(1746, 10, 950)
    assert not ahead_of_time_pays(113, 3, 1950)
    assert not ahead_of_time_pays(100, 15, 1950)
    assert not ahead_of_time_pays(188, 450, 50)


def test_the_rule_expects_shorter_trees_after_the_first_metric_window():
    """The rule judges at transition 30 on the trees of transitions 16-30, 1.6-5.3x longer than the rest
    of the run's: `expected_leaves` counts the rate measured there until the first metric window ends
    (transition 100 of a 500-transition warm-up) and a quarter of it after. On the rates measured over
    transitions 16-30: the centred eight schools (135 operations, 119 leaves; 22-24 after) does not pay
    (it did without the discount, for 22 s against a fit of 4-8 s), the horseshoe (188, 996) does,
    factor analysis as `ppl demo` runs it (266, 298; 300 warm-up) does, and so does the HMM (1,746, 76; 38
    after) since its kernels compile scalar (32 s instead of 56-81: `compile.AOT_INDUCTOR_CONFIGS`); with
    the vectorised kernels' compile it did not, as its first fit measured (123 s compiled against 107-126 s).

    Judged at 10 (rates over transitions 6-10) only a saving of 4 times the compile counts: the horseshoe
    (869-972 leaves, three seeds) compiles there; the Gaussian mixture (322 operations, 212-236 leaves on
    two seeds of four, trees that shrink to 15-26 by transitions 16-30, for a fit shorter than the compile)
    does not, nor factor analysis (29), the HMM (47) or the centred eight schools (121-140)."""
    from inference.fast.adaptation import adaptation_windows
    from inference.fast.compile import ahead_of_time_pays
    from inference.fast.sampler import AHEAD_OF_TIME_JUDGEMENTS, EARLY_TREES, Judgement, expected_leaves

    assert expected_leaves(100.0, 50, 1000, 100) == 100.0 * 50 + 100.0 / EARLY_TREES * 900
    assert expected_leaves(100.0, 50, 1000, 0) == 100.0 * 950  # no windows: no discount
    assert expected_leaves(100.0, 50, 80, 100) == 100.0 * 30   # the run ends before the window does
    assert AHEAD_OF_TIME_JUDGEMENTS == (Judgement(at=10, margin=4.0), Judgement(at=30, margin=1.0))
    early, late = AHEAD_OF_TIME_JUDGEMENTS

    def pays(operations, rate, judgement=late, warmup=500, samples=500):
        total, done = warmup + samples, judgement.at
        expected = expected_leaves(rate, done, total, adaptation_windows(warmup)[0][1])
        return ahead_of_time_pays(operations, expected / (total - done), total - done, judgement.margin)

    assert ahead_of_time_pays(135, 119, 970) and not pays(135, 119)  # without the discount, and with it
    assert pays(188, 996) and pays(188, 965)
    assert pays(266, 298, warmup=300)
    assert pays(1746, 76)
    assert pays(188, 869, early) and pays(188, 972, early)
    assert not pays(322, 236, early) and pays(322, 236, Judgement(at=10, margin=2.0))  # the margin decides
    assert not any(pays(*sizes, early) for sizes in [(266, 29), (1746, 47), (135, 140)])


def test_the_leaf_step_graph_is_what_the_backend_compiles():
    """`leaf_step_graph` hands out the recorded leaf step, with inputs of its shapes; compiled by the seam it
    gives what the graph gives (the coin: 4 chains)."""
    from inference.fast import compile_graph, leaf_step_graph
    from inference.structure import inspect_model
    from ppl_models.registry import resolve

    spec, model, _ = resolve("coin")
    data = spec.validate(COIN)
    graph, example = leaf_step_graph(model, data, inspect_model(model, data))
    assert example[0].shape == (4, 1) and sum(n.op == "call_function" for n in graph.graph.nodes) > 50
    want = graph(*example)
    got = compile_graph(graph, example, "torchscript")(*example)
    assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))


def test_an_inductor_that_fails_leaves_torchscript_and_says_why(monkeypatch):
    import inference.fast.compile as compile_seam

    def no_compiler(graph, example, configs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compile_seam, "_ahead_of_time", no_compiler)
    post = fit("coin", data=COIN, method="nuts", num_chains=2, num_samples=20, num_warmup=20, progress=False,
               compiler="inductor")
    note = next(n for n in post.notes if n.startswith("fast backend"))
    assert "compiled leapfrog step and trajectory (AOTInductor failed: RuntimeError: no C++ compiler found)" in note


@pytest.mark.skipif(not ahead_of_time_available(), reason="no C++ compiler for AOTInductor")
def test_auto_moves_to_ahead_of_time_at_a_fixed_transition_and_stays_reproducible(tmp_path, monkeypatch, caplog):
    """Where the rule says it pays, ``compiler="auto"`` compiles the leaf step ahead of time after 30
    transitions and says so; the same seed gives the same draws again (the second fit loads the package,
    quietly: torch's loader reports the scalar kernels' missing vector instruction set as a mismatch), and
    the posterior is the exact one (the coin's Beta(9, 5) mean, within 4 Monte-Carlo standard errors)."""
    import inference.fast.sampler as sampler

    monkeypatch.setenv("PPL_CACHE_DIR", str(tmp_path))
    # a rule that pays at the judgement without a margin (transition 30), not at the early one (10)
    monkeypatch.setattr(sampler, "ahead_of_time_pays", lambda operations, leaves, transitions, margin: margin == 1)
    kw = dict(method="nuts", num_chains=4, num_samples=400, num_warmup=200, progress=False, seed=3)
    first = fit("coin", data=COIN, **kw)
    second = fit("coin", data=COIN, **kw)
    note = next(n for n in first.notes if n.startswith("fast backend"))
    assert "leapfrog step compiled ahead of time (AOTInductor) from transition 31" in note
    assert np.array_equal(first.samples["p"], second.samples["p"])
    assert not [r.getMessage() for r in caplog.records if "mismatch" in r.getMessage()]
    p = first.samples["p"]
    mcse = float(az.mcse(az.convert_to_dataset({"p": p}))["p"])
    assert abs(p.mean() - 9 / 14) < 4 * mcse


def test_divergences_under_the_pooled_warm_up_name_a_step_size_per_chain_as_a_remedy():
    """One step size for all chains can be too large for a chain that wanders where the posterior is narrow
    (the horseshoe on two seeds of ten, the centred eight schools on three of twenty): the divergence
    problem names the warm-up with a step size per chain; under the per-chain warm-up it does not."""
    from benchmarks.corpus import eight_schools_centred as program

    kw = dict(method="nuts", num_chains=4, num_samples=200, num_warmup=30, progress=False, seed=1)
    pooled = [p for p in fit(program.MODEL, data=program.data(0), **kw).problems() if "diverged" in p]
    per_chain = [p for p in fit(program.MODEL, data=program.data(0), adaptation="per chain", **kw).problems()
                 if "diverged" in p]
    assert pooled and "adaptation='pooled metric'" in pooled[0]
    assert per_chain and "adaptation=" not in per_chain[0]
    post = fit(program.MODEL, data=program.data(0), adaptation="pooled metric", **kw)
    assert any("one metric for all chains and a step size per chain" in note for note in post.notes), post.notes
    assert all("adaptation=" not in p for p in post.problems())
