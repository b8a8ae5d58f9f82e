"""The suite's NUTS on Pyro programs as their authors wrote them (the corpus of `benchmarks/corpus`).

Every program runs on the fast backend, batched and compiled; on the cheap programs with an oracle the
posterior means and sds agree with it within 4 standard errors (the draws' Monte-Carlo standard error from
ArviZ combined with the oracle's own): the exact posterior for the tutorial's Bayesian regression (Gaussian
given sigma, quadrature over sigma), Stan's reference draws (posteriordb) for eight schools, importance
sampling of the same log density (`ppl.checks.importance_posterior`) for the other low-dimensional GLMs and
LKJ; a compiled run and an eager run from the same seed give the same draws; and the moment check
rejects an oracle moved by half a posterior sd.

Programs without an oracle here: baseball (20 dimensions; the curvature at the mode is not positive
definite, so there is no Student-t proposal), Pyro's eight schools example (its own priors, which
posteriordb does not have; importance sampling's effective sample size is about 30 on it), centred eight
schools (NUTS is not expected to be exact in its funnel at this budget), the mixture and the HMM (two modes,
the labels swapped), the horseshoe (heavy tails; not cheap).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the corpus lives beside the packages, in benchmarks/
    sys.path.insert(0, str(REPO))

from benchmarks.corpus import PROGRAMS, Program  # noqa: E402
from inference import fit  # noqa: E402
from inference.fast import run_fast_mcmc  # noqa: E402
from inference.structure import inspect_model  # noqa: E402
from ppl.checks import Check, against_moments, importance_posterior  # noqa: E402

Moments = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # site -> (mean, sd, oracle's se of the mean)

MOMENT_BUDGET = dict(num_chains=4, num_warmup=300, num_samples=300)
IMPORTANCE_ORACLE = ["poisson_glm", "hierarchical_logistic", "negbin_glm", "lkj"]
COMPILED_VS_EAGER = ["bayesian_regression", "hierarchical_logistic", "lkj"]  # PyroModule, a[g], LKJ (float64)


def _by_cost(names):
    return [pytest.param(n, id=n) if PROGRAMS[n].cheap else pytest.param(n, id=n, marks=pytest.mark.slow)
            for n in names]


def _moment_fit(name: str):
    """The program's fit for the moment checks: 4 chains x (300 + 300), seed 0."""
    program = PROGRAMS[name]
    return fit(program.model, data=program.data(0), method="nuts", seed=0, progress=False, **MOMENT_BUDGET)


def _scalars(samples: dict[str, np.ndarray], moments: Moments) -> tuple[dict[str, np.ndarray], Moments]:
    """Every scalar component of every site in `moments`, keyed ``site[i,j]``, as draws (chain, draw) and
    (mean, sd, se); components the support fixes (the oracle's sd is 0: an LKJ factor's first row and upper triangle)
    left out."""
    draws, exact = {}, {}
    for site, (mean, sd, se) in moments.items():
        values = np.asarray(samples[site], dtype=float)
        shape = values.shape[2:]
        for index in np.ndindex(*shape):
            if float(np.asarray(sd)[index]) < 1e-9:
                continue
            key = f"{site}[{','.join(map(str, index))}]" if shape else site
            draws[key] = values[(slice(None), slice(None)) + index]
            exact[key] = tuple(float(np.asarray(a)[index]) for a in (mean, sd, se))
    return draws, exact


def _moments_agree(samples: dict[str, np.ndarray], moments: Moments, ess: float, oracle: str) -> Check:
    """`ppl.checks.against_moments` on every free scalar: means and sds within 4 combined standard errors."""
    draws, exact = _scalars(samples, moments)
    return against_moments(draws, {**exact, "_ess": ess}, oracle)


def _shifted(moments: Moments, by_sds: float) -> Moments:
    """`moments` with every mean moved by `by_sds` of its own sd: a wrong answer the check must reject."""
    return {k: (np.asarray(m) + by_sds * np.asarray(s), s, se) for k, (m, s, se) in moments.items()}


# ---- every program: the fast, batched, compiled path ------------------------------------------------------
@pytest.mark.parametrize("name", _by_cost(PROGRAMS))
def test_program_runs_on_the_compiled_fast_path(name):
    program = PROGRAMS[name]
    post = fit(program.model, data=program.data(0), method="nuts", num_chains=2, num_samples=30, num_warmup=30,
               seed=0, progress=False)
    assert not any("unavailable" in n for n in post.notes), post.notes
    backend = [n for n in post.notes if "backend" in n]  # (fit may say first that local sites are sampled)
    assert backend and backend[0].startswith("fast backend:"), post.notes
    assert "compiled leapfrog step" in backend[0], post.notes
    structure = inspect_model(program.model, program.data(0))
    for site in structure.continuous:
        assert post.samples[site].shape[:2] == (2, 30), (site, post.samples[site].shape)


def test_vectorising_prints_nothing_to_stderr():
    """torch's vmap prints a C++ warning ("performance drop ... batching rule for aten::scatter_.value") for
    an operation without a batching rule, straight to stderr where Python's filters cannot reach it; the LKJ
    prior's gradient has one (``cumprod``'s backward), recorded decomposed so that vmap has a rule for it.
    Run in a fresh process: torch prints such a warning once per process."""
    import subprocess

    code = ("import sys; sys.path.insert(0, '.');"
            "from benchmarks.corpus import PROGRAMS; from inference import fit; p = PROGRAMS['lkj'];"
            "post = fit(p.model, data=p.data(0), method='nuts', num_chains=2, num_samples=5, num_warmup=5,"
            " seed=0, progress=False); print(post.notes[0])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vectorised" in done.stdout, done.stdout
    assert "performance drop" not in done.stderr and "BatchedFallback" not in done.stderr, done.stderr[-2000:]


def test_the_corpus_is_described():
    assert len(PROGRAMS) >= 11
    for name, program in PROGRAMS.items():
        assert isinstance(program, Program) and program.name == name
        assert program.source and program.idiom and callable(program.model)
        assert isinstance(program.data(0), dict) and program.data.__doc__


# ---- moments against an oracle ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", IMPORTANCE_ORACLE)
def test_moments_match_importance_sampling(name):
    """Means and sds within 4 standard errors of importance sampling of the same log density (a Student-t
    proposal at the mode; nothing shared with the sampler but the density); an oracle moved by half a
    posterior sd is rejected."""
    assert PROGRAMS[name].cheap
    post = _moment_fit(name)
    moments, ess = importance_posterior(post)
    assert ess >= 1000, f"importance sampling's effective sample size {ess:.0f} is too small to be an oracle"
    oracle = f"importance sampling (ESS {ess:.0f})"
    check = _moments_agree(post.samples, moments, ess, oracle)
    assert check.passed, check.text
    wrong = _moments_agree(post.samples, _shifted(moments, 0.5), ess, oracle)
    assert not wrong.passed, wrong.text


def _regression_posterior(x: np.ndarray, y: np.ndarray, weight_sd: float = 1.0, bias_sd: float = 10.0,
                          grid_size: int = 2001) -> Moments:
    """The exact posterior moments of the tutorial's `BayesianRegression(D, 1)`: weight ~ N(0, 1), bias ~
    N(0, 10^2), y ~ N(x w + b, sigma^2), sigma ~ Uniform(0, 10). Given sigma, (w, b) is Gaussian; p(sigma | y)
    is proportional to N(y; 0, sigma^2 I + Z S0 Z^T) on (0, 10), tabulated on an even grid around the
    least-squares residual sd (its edges must carry no mass), and the conditional Gaussians are mixed over it."""
    n = len(y)
    Z = np.column_stack([x, np.ones(n)])
    prior_var = np.r_[np.full(x.shape[1], weight_sd**2), bias_sd**2]
    lam, U = np.linalg.eigh((Z * prior_var) @ Z.T)  # the marginal covariance is sigma^2 I + U diag(lam) U^T
    lam = np.clip(lam, 0.0, None)
    projected = (U.T @ y) ** 2
    residual = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    centre = float(np.sqrt(residual @ residual / (n - Z.shape[1])))
    sigmas = np.linspace(0.6 * centre, 1.6 * centre, grid_size)
    assert sigmas[-1] < 10.0  # inside the Uniform(0, 10) prior: its density is constant on the grid
    log_w = np.array([-0.5 * (np.log(s**2 + lam).sum() + (projected / (s**2 + lam)).sum()) for s in sigmas])
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    assert max(w[0], w[-1]) < 1e-10, "the grid over sigma does not hold its posterior"
    means, covariances = [], []
    for s in sigmas:
        covariance = np.linalg.inv(Z.T @ Z / s**2 + np.diag(1.0 / prior_var))
        means.append(covariance @ Z.T @ y / s**2)
        covariances.append(covariance)
    means = np.array(means)
    mean = w @ means
    second = np.einsum("g,gij->ij", w, np.array(covariances)) + np.einsum("g,gi,gj->ij", w, means, means)
    sd = np.sqrt(np.diag(second) - mean**2)
    sigma_mean = float(w @ sigmas)
    sigma_sd = float(np.sqrt(w @ sigmas**2 - sigma_mean**2))
    d = x.shape[1]
    return {"linear.weight": (mean[None, :d], sd[None, :d], np.zeros((1, d))),
            "linear.bias": (mean[d:], sd[d:], np.zeros(1)),
            "sigma": (np.array(sigma_mean), np.array(sigma_sd), np.array(0.0))}


@pytest.mark.slow
def test_pyromodule_regression_matches_its_exact_posterior():
    """`PyroModule[nn.Linear]` with `PyroSample` priors against its exact posterior (Gaussian given sigma,
    quadrature over sigma): means and sds within 4 Monte-Carlo standard errors; an answer moved by half a
    posterior sd is rejected."""
    data = PROGRAMS["bayesian_regression"].data(0)
    exact = _regression_posterior(data["x"].double().numpy(), data["y"].double().numpy())
    post = _moment_fit("bayesian_regression")
    check = _moments_agree(post.samples, exact, math.inf, "exact posterior")
    assert check.passed, check.text
    wrong = _moments_agree(post.samples, _shifted(exact, 0.5), math.inf, "exact posterior, moved")
    assert not wrong.passed, wrong.text


@pytest.mark.slow
def test_eight_schools_matches_stans_reference_draws(shared_data):
    """The reparametrised eight schools (posteriordb's priors) against Stan's 10 x 1000 reference draws of
    mu, tau and theta: means and sds within 4 standard errors (both sides' MCSE from ArviZ); an answer moved
    by half a posterior sd is rejected."""
    import arviz as az

    reference = np.load(shared_data / "posteriordb" / "eight_schools-eight_schools_noncentered" / "reference_draws.npz")
    post = _moment_fit("eight_schools_reparam")
    s = post.samples
    theta = s["mu"][..., None] + s["tau"][..., None] * s["theta_base"]
    samples = {"mu": s["mu"], "tau": s["tau"], **{f"theta[{j + 1}]": theta[..., j] for j in range(8)}}
    moments, ess = {}, []
    for name in samples:
        ref = reference[name].astype(float)
        moments[name] = (ref.mean(), ref.std(), float(np.squeeze(az.mcse(ref))))  # (a 1-element array)
        ess.append(float(np.squeeze(az.ess(ref))))
    check = _moments_agree(samples, moments, min(ess), "Stan's reference draws (posteriordb)")
    assert check.passed, check.text
    wrong = _moments_agree(samples, _shifted(moments, 0.5), min(ess), "Stan's reference draws, moved")
    assert not wrong.passed, wrong.text


def test_the_moment_check_uses_the_draws_autocorrelation():
    """On AR(1) draws (autocorrelation 0.9, exact mean 0 and sd 1) the check passes at the truth, and
    rejects a mean moved by half an sd; an error of 3 iid standard errors, which ignoring the
    autocorrelation would reject, is within its 4 Monte-Carlo standard errors."""
    rng = np.random.default_rng(0)
    rho, chains, n = 0.9, 4, 2000
    x = np.empty((chains, n))
    x[:, 0] = rng.standard_normal(chains)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * rng.standard_normal(chains)
    x -= x.mean()  # the sample mean exactly at the truth: what is tested is the tolerance alone
    exact = {"x": (np.array(0.0), np.array(1.0), np.array(0.0))}
    assert _moments_agree({"x": x}, exact, math.inf, "exact").passed
    assert not _moments_agree({"x": x}, _shifted(exact, 0.5), math.inf, "exact").passed
    iid_se = x.std() / math.sqrt(x.size)
    assert _moments_agree({"x": x + 3 * iid_se}, exact, math.inf, "exact").passed


# ---- compiled and eager transitions ------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMPILED_VS_EAGER)
def test_compiled_and_eager_runs_give_the_same_draws(name):
    """The fast backend with its compiled leaf step and tree, and with the eager step (``compile=False``),
    from the same seed and budget: the same tree sizes and the same draws, to float tolerance."""
    program = PROGRAMS[name]
    data = program.data(0)
    runs = {}
    for compile in (True, False):
        structure = inspect_model(program.model, data)
        samples, stats, notes = run_fast_mcmc(program.model, data, structure, method="nuts", seed=3, num_chains=2,
                                              num_warmup=20, num_samples=20, compile=compile, progress=False)
        runs[compile] = (samples, stats, notes[0])
    (compiled, compiled_stats, compiled_note), (eager, eager_stats, eager_note) = runs[True], runs[False]
    assert "compiled leapfrog step" in compiled_note and "eager leapfrog step" in eager_note
    np.testing.assert_array_equal(compiled_stats["n_steps"], eager_stats["n_steps"])
    for site in eager:
        np.testing.assert_allclose(compiled[site], eager[site], rtol=1e-5, atol=1e-6, err_msg=site)
