"""Per-draw quantities of a program that runs only draw by draw (``X @ b``, ``locs[z]``): the program at one
draw is recorded once and vectorised over the draws (`inference.predictive._recorded_draws`), where it ran
Pyro's handlers once per draw (to_arviz of a 4000-draw regression: 21-24 s, now 1-4 s; an HMM's
`infer_discrete`: 0.25-0.7 s a draw). The results must be those of the draw-by-draw loop: the same
pointwise log-likelihood, and draws from the same distributions.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from inference import predictive
from inference.structure import inspect_model


def mixture(x):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(torch.tensor([-2.0, 2.0]), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def test_recorded_draws_follow_the_exact_conditional(monkeypatch):
    x = torch.tensor([-2.5, -0.3, 0.1, 0.4, 2.2])
    data = {"x": x}
    structure = inspect_model(mixture, data)
    weights, locs = np.array([0.3, 0.7], dtype=np.float32), np.array([-1.5, 1.0], dtype=np.float32)
    chains, draws = 2, 2000
    samples = {"weights": np.broadcast_to(weights, (chains, draws, 2)).copy(),
               "locs": np.broadcast_to(locs, (chains, draws, 2)).copy()}
    calls = []
    recorded = predictive._recorded_draws
    monkeypatch.setattr(predictive, "_recorded_draws", lambda *a, **k: calls.append(1) or recorded(*a, **k))
    torch.manual_seed(0)
    z = predictive.sample_discrete(mixture, data, structure, samples)["z"]
    assert calls and z.shape == (chains, draws, 5)
    # p(z_i = 1 | weights, locs, x_i) in closed form
    log_joint = np.log(weights) - 0.5 * (x.numpy()[:, None] - locs) ** 2
    exact = np.exp(log_joint[:, 1] - np.logaddexp(log_joint[:, 0], log_joint[:, 1]))
    n = chains * draws
    frequency = z.reshape(n, 5).mean(0)
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(frequency - exact) <= 4 * se + 1e-3), (frequency, exact)
    # and the check has power: a conditional that ignored the data (the prior weights) is rejected
    assert np.any(np.abs(frequency - weights[1]) > 4 * se)


def regression(X, y=None):
    b = pyro.sample("b", dist.Normal(torch.zeros(X.shape[1]), 1.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(X @ b, sigma), obs=y)


def _regression_draws(chains=2, draws=1500):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(6, 2, generator=g)
    data = {"X": X, "y": torch.randn(6, generator=g)}
    b = torch.randn(chains, draws, 2, generator=g).numpy()
    sigma = (0.5 + torch.rand(chains, draws, generator=g)).numpy()
    return data, {"b": b, "sigma": sigma}


def test_recorded_log_likelihood_is_the_loops(monkeypatch):
    data, samples = _regression_draws(draws=50)
    structure = inspect_model(regression, data)
    used = []
    original = predictive._recorded_draws
    monkeypatch.setattr(predictive, "_recorded_draws", lambda *a, **k: used.append(original(*a, **k)) or used[-1])
    recorded, _ = predictive.log_likelihood(regression, data, structure, samples)
    assert used and used[0] is not None  # (the recorded path ran)
    monkeypatch.setattr(predictive, "_recorded_draws", lambda *a, **k: None)
    looped, _ = predictive.log_likelihood(regression, data, structure, samples)
    assert recorded["y"].shape == (2, 50, 6)
    np.testing.assert_allclose(recorded["y"], looped["y"], rtol=1e-5, atol=1e-5)
    exact = (-0.5 * ((data["y"].numpy() - np.einsum("nd,cid->cin", data["X"].numpy(), samples["b"]))
                     / samples["sigma"][..., None]) ** 2 - np.log(samples["sigma"][..., None] * np.sqrt(2 * np.pi)))
    np.testing.assert_allclose(recorded["y"], exact, rtol=1e-4, atol=1e-4)


def test_recorded_predictive_draws_each_draw_its_own_noise():
    """y_rep given each draw is Normal(X b, sigma): standardised by its own draw's mean and sd, the
    recorded draws are N(0, 1), independent across draws (not one noise repeated)."""
    data, samples = _regression_draws()
    structure = inspect_model(regression, data)
    torch.manual_seed(0)
    y_rep = predictive.predictive(regression, data, structure, samples)["y"]
    mean = np.einsum("nd,cid->cin", data["X"].numpy(), samples["b"])
    standard = ((y_rep - mean) / samples["sigma"][..., None]).ravel()
    n = standard.size
    assert abs(standard.mean()) < 4 / np.sqrt(n)
    assert abs(standard.var() - 1) < 4 * np.sqrt(2 / n)
    assert len(np.unique(np.round(standard, 6))) > 0.99 * n


def test_a_float64_program_gets_its_predictive_groups():
    """A program that computes in float64 (``examples/lkj.py`` makes its data double) keeps float64 draws
    through the per-draw work (they were cast to float32 and its matrix products refused them)."""
    from inference import fit

    def model(X, y=None):
        b = pyro.sample("b", dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)

    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 2, generator=g, dtype=torch.float64)
    post = fit(model, data={"X": X, "y": X @ torch.tensor([1.0, -1.0], dtype=torch.float64)}, num_chains=2,
               num_samples=20, num_warmup=20, progress=False)
    idata = post.to_arviz()
    assert idata.log_likelihood["y"].shape == (2, 20, 8)
    assert idata.posterior_predictive["y"].shape == (2, 20, 8)
