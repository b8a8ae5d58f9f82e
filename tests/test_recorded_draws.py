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


# --- the enumeration tutorial's HMM, as written there: `x = 0`, then `transition[x]` at every step ---

STEPS = 0  # steps the HMM below has run (the layout probe's test counts them)


def tutorial_hmm(data, data_dim, hidden_dim=3):
    global STEPS
    with pyro.plate("hidden_state", hidden_dim):
        transition = pyro.sample("transition", dist.Dirichlet(0.5 * torch.ones(hidden_dim)))
        emission = pyro.sample("emission", dist.Dirichlet(0.5 * torch.ones(data_dim)))
    x = 0  # initial state
    for t, y in pyro.markov(enumerate(data)):
        STEPS += 1
        x = pyro.sample(f"x_{t}", dist.Categorical(transition[x]), infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Categorical(emission[x]), obs=y)


def _hmm_draws(T=12, chains=2, draws=3, seed=0):
    rng = np.random.default_rng(seed)
    data = {"data": torch.as_tensor(rng.integers(0, 4, T)), "data_dim": 4}
    samples = {"transition": rng.dirichlet(np.ones(3), (chains, draws, 3)).astype(np.float32),
               "emission": rng.dirichlet(np.ones(4), (chains, draws, 3)).astype(np.float32)}
    return data, samples


def test_the_layout_probe_stops_at_the_first_site_that_does_not_fit():
    """Run over a few draws at once, the HMM's ``transition[x]`` picks along the draw axis and every step
    adds axes: the probe ran all steps, 3^14 values by step 14, and filled 24 GB on 30 steps (its fit's
    sample_discrete took 152 s at 16). The probe now stops at the first site whose shape does not fit."""
    global STEPS
    data, samples = _hmm_draws(T=10)
    structure = inspect_model(tutorial_hmm, data)
    ev = predictive._Evaluator(tutorial_hmm, data, structure)
    flat, _ = predictive.flatten(samples, structure)
    STEPS = 0
    assert ev.choose(flat, 6) == "loop"
    assert STEPS <= 4, STEPS  # two layouts tried, each stopped within its first two steps (was 20)


def test_an_hmm_s_pointwise_log_likelihood_is_its_closed_form(monkeypatch):
    """log p(y_t | transition, emission) with every hidden state summed out: p(x_0) = transition[0],
    p(x_t) = p(x_{t-1}) transition, p(y_t) = sum_x p(x_t = x) emission[x, y_t]. Recorded once and vectorised
    over the draws (it ran the model and 30 contractions per draw: 156 s of to_arviz on 600 draws of 30
    steps), and the recorded path is the one taken."""
    T = 12
    data, samples = _hmm_draws(T=T)
    structure = inspect_model(tutorial_hmm, data)
    calls = []
    recorded = predictive._recorded_draws
    monkeypatch.setattr(predictive, "_recorded_draws", lambda *a, **k: calls.append(1) or recorded(*a, **k))
    found, note = predictive.log_likelihood(tutorial_hmm, data, structure, samples)
    assert note is None and calls
    y = data["data"].numpy()
    wrong = []  # an oracle that forgets the chain (every step as the first): the check must reject it
    for c in range(2):
        for d in range(3):
            A, B = samples["transition"][c, d].astype(np.float64), samples["emission"][c, d].astype(np.float64)
            p = A[0]
            for t in range(T):
                if t:
                    p = p @ A
                exact = np.log(p @ B[:, y[t]])
                assert abs(found[f"y_{t}"][c, d] - exact) < 1e-5, (t, found[f"y_{t}"][c, d], exact)
                wrong.append(abs(found[f"y_{t}"][c, d] - np.log(A[0] @ B[:, y[t]])))
    assert max(wrong) > 1e-2


def test_an_hmm_s_predictive_draws_follow_the_emission_of_the_drawn_state():
    """Given a draw's hidden states, y_t ~ Categorical(emission[x_t]). With 3 draws the layout probe
    passed the HMM as vectorised (3 draws, 3 states: ``transition[x]`` indexed the draw axis and the shapes
    matched), and to_arviz stopped on "The expanded size of the tensor (1) must match ... (3)"."""
    data, samples = _hmm_draws(T=4, chains=2, draws=1500)
    emission = samples["emission"][0, 0]
    samples["emission"] = np.broadcast_to(emission, samples["emission"].shape).copy()
    rng = np.random.default_rng(1)
    for t in range(4):
        samples[f"x_{t}"] = rng.integers(0, 3, (2, 1500))
    structure = inspect_model(tutorial_hmm, data)
    torch.manual_seed(0)
    draws = predictive.predictive(tutorial_hmm, data, structure, samples)
    for t in range(4):
        y, x = draws[f"y_{t}"], samples[f"x_{t}"]
        assert y.shape == (2, 1500)
        for state in range(3):
            picked = y[x == state]
            freq = np.bincount(picked, minlength=4) / len(picked)
            se = np.sqrt(emission[state] * (1 - emission[state]) / len(picked))
            assert np.all(np.abs(freq - emission[state]) <= 4 * se + 1e-3), (t, state, freq, emission[state])


def test_an_hmm_s_hidden_states_are_recorded_and_follow_the_exact_posterior(monkeypatch):
    """`infer_discrete`'s replay of the tutorial HMM indexes ``transition[x]`` with a drawn 0-dim state,
    which torch reads as a Python number: the recording stopped and the states were drawn one draw at a
    time (most of a 30-step fit's time). Recorded, the draws of each x_t follow its exact posterior
    marginal, by enumeration of all 3^5 paths."""
    import itertools

    T = 5
    data, samples = _hmm_draws(T=T, draws=2000)
    A, B = samples["transition"][0, 0].astype(np.float64), samples["emission"][0, 0].astype(np.float64)
    for k, v in (("transition", A), ("emission", B)):
        samples[k] = np.broadcast_to(v.astype(np.float32), samples[k].shape).copy()
    structure = inspect_model(tutorial_hmm, data)
    outcomes = []
    recorded = predictive._recorded_draws
    monkeypatch.setattr(predictive, "_recorded_draws",
                        lambda *a, **k: (lambda r: outcomes.append(r is not None) or r)(recorded(*a, **k)))
    torch.manual_seed(0)
    z = predictive.sample_discrete(tutorial_hmm, data, structure, samples)
    assert outcomes == [True]
    y = data["data"].numpy()
    marginal = np.zeros((T, 3))
    for path in itertools.product(range(3), repeat=T):
        weight = np.prod([A[0 if t == 0 else path[t - 1], path[t]] * B[path[t], y[t]] for t in range(T)])
        marginal[np.arange(T), path] += weight
    marginal /= marginal.sum(1, keepdims=True)
    n = 2 * 2000
    for t in range(T):
        freq = np.bincount(z[f"x_{t}"].reshape(-1), minlength=3) / n
        se = np.sqrt(marginal[t] * (1 - marginal[t]) / n)
        assert np.all(np.abs(freq - marginal[t]) <= 4 * se + 1e-3), (t, freq, marginal[t])
    # the check has power: the prior marginal of x_1 (the data ignored) is rejected
    prior = A[0] @ A
    assert np.any(np.abs(np.bincount(z["x_1"].reshape(-1), minlength=3) / n - prior) > 4 * np.sqrt(prior * (1 - prior) / n))
