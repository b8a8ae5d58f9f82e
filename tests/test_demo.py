"""`ppl demo`: the report covers every registered model and names no missing file; the oracle checks pass
on exact draws and fail on wrong ones."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ppl_models
from ppl import demo, sbc_section
from ppl.checks import CHECKS, Check, combine, run_check, within_mcse
from ppl.report import ModelReport, inline_svg, page

from conftest import REPO, run_as_user


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.refs.append(attrs["src"])
        if tag == "a" and attrs.get("href") and not attrs["href"].startswith("#"):
            self.refs.append(attrs["href"])
        if tag == "section" and attrs.get("id"):
            self.ids.append(attrs["id"])


@pytest.fixture(scope="module")
def made_run() -> subprocess.CompletedProcess:
    """`make run` exactly as the README writes it, in the checkout: the set-up (already done there: a no-op),
    then the whole demo at its own budgets into demo-out/. Run once; the tests below read its page."""
    started = time.time()
    done = run_as_user(["make", "run"], REPO, timeout=1500, check=False)
    done.started = started
    return done


@pytest.fixture(scope="module")
def report_dir(made_run) -> Path:
    index = REPO / "demo-out" / "index.html"
    assert index.is_file() and index.stat().st_mtime >= made_run.started, \
        "make run wrote no new page:\n" + made_run.stdout[-2000:] + made_run.stderr[-2000:]
    return REPO / "demo-out"


@pytest.mark.slow
def test_make_run_passes_every_oracle_check_and_ends_by_naming_the_page_to_open(made_run, report_dir):
    """Exit 0: every fit ran and every oracle check passed at the demo's budgets (the VAE's and the GraphVAE's
    among them, whose checks fail an untrained network: below)."""
    assert made_run.returncode == 0, made_run.stdout[-3000:] + made_run.stderr[-2000:]
    assert made_run.stdout.rstrip().splitlines()[-1].startswith("Open demo-out/index.html in a web browser")
    for name in CHECKS:
        assert re.search(rf"^{name} .* passed$", made_run.stdout, flags=re.M), made_run.stdout


@pytest.mark.slow
def test_report_has_a_section_per_model_and_names_only_existing_files(report_dir):
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    links = _Links()
    links.feed(text)
    assert sorted(links.ids) == sorted(ppl_models.names() + ["compare", "sbc"])
    for name in ppl_models.names():
        assert f"href='#{name}'" in text
        assert (report_dir / name / "posterior.nc").is_file()
    images = [r for r in links.refs if r.endswith((".png", ".svg"))]
    assert len(images) >= len(ppl_models.names())  # at least one figure per model
    for ref in links.refs:
        assert (report_dir / ref).is_file(), f"index.html names {ref}, which does not exist"


@pytest.mark.slow
def test_report_shows_diagram_factorization_summary_and_check(report_dir):
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    assert "fit failed" not in text
    sections = re.split(r"<section id='", text)[1:]
    for name, body in zip(sorted(ppl_models.names()), sections):
        assert body.startswith(name)
        if shutil.which("dot"):  # without Graphviz the diagram is written as DOT source instead
            assert "<svg" in body, f"{name}: no inline diagram"
        # a model whose latent sites are all local (one per data point) has no table; the page says why
        assert "class='summary'" in body or "no global latent site" in body, f"{name}: no summary table"
        assert "factorization not available" not in body, f"{name}: no factorization"
        assert ("oracle check passed" in body or "oracle check FAILED" in body) == (name in CHECKS)
    # one model by several methods, side by side, after the models
    compared = text.split("<section id='compare'>")[1]
    name, methods = demo.COMPARED
    assert name in compared and "failed" not in compared.split("</h2>")[0]
    for method in methods:
        assert f"<tr><th>{method}</th>" in compared
    # simulation-based calibration of the cheap models, each with its ECDF plot and verdicts (ppl.sbc_section)
    calibration = text.split("<section id='sbc'>")[1]
    for model, method, _ in sbc_section.RUNS:
        assert f"<h3>{model} by {method}: " in calibration and f"src='sbc/{model}-{method}.png'" in calibration
    assert "failed:" not in calibration and "simultaneous band" in calibration
    # the inline diagrams keep their ids apart
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_failed_fit_is_reported_not_raised():
    text = page([ModelReport("broken", "nuts", error="RuntimeError: boom"),
                 ModelReport("fine", "map", check=Check(False, "p: off"))])
    assert "the fit failed: RuntimeError: boom" in text
    assert "oracle check FAILED" in text and "p: off" in text


def test_inline_svg_drops_the_prolog_and_prefixes_ids():
    svg = ('<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x" "y">\n<!-- Generated by graphviz -->\n'
           '<svg width="10pt"><g id="graph0"><g id="node1" class="node"><use href="#node1"/></g></g></svg>')
    out = inline_svg(svg, "coin")
    assert out.startswith("<svg") and "DOCTYPE" not in out and "<!--" not in out
    assert 'id="coin-graph0"' in out and 'href="#coin-node1"' in out


# ---- oracle checks: pass on draws from the exact answer, fail on draws from a wrong one ---------------
def _posterior(method: str, **samples) -> SimpleNamespace:
    return SimpleNamespace(method=method, samples={k: np.asarray(v) for k, v in samples.items()})


COIN = {"flips": np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], dtype=float), "alpha": 2.0, "beta": 2.0}  # Beta(9, 5)


def test_coin_check_passes_on_exact_posterior_draws():
    rng = np.random.default_rng(1)
    draws = rng.beta(9, 5, size=(2, 2000))
    result = run_check("coin", _posterior("nuts", p=draws), COIN)
    assert result.passed, result.text
    assert "Beta(9, 5)" in result.text


@pytest.mark.parametrize("a, b, why", [(10, 5, "mean"), (4.5, 2.5, "sd")])
def test_coin_check_fails_on_a_wrong_posterior(a, b, why):
    # Beta(10, 5) has the wrong mean; Beta(4.5, 2.5) the right mean (9/14) but an sd 37% too wide
    draws = np.random.default_rng(2).beta(a, b, size=(2, 2000))
    result = run_check("coin", _posterior("nuts", p=draws), COIN)
    assert not result.passed, result.text


def test_coin_check_of_point_estimates():
    mode, mle = 8 / 12, 7 / 10
    assert run_check("coin", _posterior("map", p=[[mode]]), COIN).passed
    assert not run_check("coin", _posterior("map", p=[[mle]]), COIN).passed  # the MLE is not the MAP
    assert run_check("coin", _posterior("mle", p=[[mle]]), COIN).passed
    assert not run_check("coin", _posterior("mle", p=[[mode]]), COIN).passed


def test_bayes_net_check_against_pgmpy():
    pytest.importorskip("pgmpy")
    from ppl_models.bayes_net import load

    net = load("sprinkler")
    evidence = {"wet_grass": "yes"}
    exact = net.query(None, evidence)
    rng = np.random.default_rng(3)

    def draws(marginals):
        out = {}
        for var, probs in marginals.items():
            p = np.array([probs[s] for s in net.states[var]])
            out[var] = rng.choice(len(p), size=(2, 1000), p=p / p.sum())
        return out

    data = {"evidence": evidence, "network": "sprinkler"}
    assert run_check("bayes_net", _posterior("nuts", **draws(exact)), data).passed
    prior = net.query(None, {})  # forgetting the evidence
    prior = {v: prior[v] for v in exact}
    assert not run_check("bayes_net", _posterior("nuts", **draws(prior)), data).passed


def test_check_helpers_use_the_mcse():
    rng = np.random.default_rng(4)
    draws = rng.normal(1.0, 1.0, size=(2, 1000))
    assert within_mcse("x", draws, 1.0).passed
    assert not within_mcse("x", draws, 1.3).passed  # 0.3 is about 13 standard errors away
    assert not combine([Check(True, "a"), Check(False, "b")]).passed
    assert run_check("no_such_model", None, {}) is None


def test_summary_table_keeps_small_sites_and_a_few_rows_of_large_ones():
    import pandas as pd

    from ppl.report import SHOWN_SITE_ROWS, summary_table

    index = ["sigma"] + [f"z[{i}]" for i in range(50)] + ["w[0]", "w[1]"]
    table = pd.DataFrame({"mean": np.arange(len(index), dtype=float), "r_hat": np.nan}, index=index)
    text = summary_table(table)
    assert text.count("<tr>") == 1 + 3 + SHOWN_SITE_ROWS  # header, the small sites, the first rows of z
    assert "<th>w[1]</th>" in text and f"<th>z[{SHOWN_SITE_ROWS}]</th>" not in text
    assert "r_hat" not in text  # a column with no values (one chain) is dropped
    assert f"and {50 - SHOWN_SITE_ROWS} more rows in summary.csv" in text


@pytest.mark.slow
def test_linear_regression_oracle_equals_brute_force_quadrature_of_the_model_density():
    """The quadrature-over-sigma posterior against a 3-D grid of the model's own log density (D = 1)."""
    pytest.importorskip("ppl_models.regression")
    import torch
    from pyro import poutine
    from scipy import stats

    from ppl.checks import linear_regression_posterior
    from ppl_models.regression import linear_regression

    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 1))
    y = 0.5 + 1.2 * X[:, 0] + 0.8 * rng.normal(size=30)
    y_loc, y_scale, xbar = y.mean(), y.std(), X.mean()

    def log_joint(a, b, s):  # the model's density, written out: checked against Pyro's below
        return (stats.norm(0, 1).logpdf(b) + stats.norm(y_loc - b * xbar, 2.5 * y_scale).logpdf(a)
                + stats.halfcauchy(scale=y_scale).logpdf(s)
                + stats.norm(a[..., None] + b[..., None] * X[:, 0], s[..., None]).logpdf(y).sum(-1))

    for a, b, s in [(0.3, 1.0, 0.7), (0.9, 0.2, 1.4)]:
        values = {"intercept": torch.tensor(a), "coef": torch.tensor([b]), "sigma": torch.tensor(s)}
        trace = poutine.trace(poutine.condition(linear_regression, values)).get_trace(
            X=torch.tensor(X, dtype=torch.float64), y=torch.tensor(y, dtype=torch.float64))
        assert log_joint(np.array(a), np.array(b), np.array(s)) == pytest.approx(float(trace.log_prob_sum()), rel=1e-6)

    exact = linear_regression_posterior({"X": X, "y": y})
    grids = [np.linspace(m - 7 * sd, m + 7 * sd, 61) for m, sd in
             (exact["intercept"], (exact["coef"][0][0], exact["coef"][1][0]), exact["sigma"])]
    grids[2] = grids[2][grids[2] > 0]
    A, B, S = np.meshgrid(*grids, indexing="ij")
    logp = log_joint(A, B, S)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    for site, grid in (("intercept", A), ("coef", B), ("sigma", S)):
        mean = (w * grid).sum()
        sd = np.sqrt((w * grid**2).sum() - mean**2)
        m_exact, sd_exact = (np.ravel(v)[0] for v in exact[site])
        assert mean == pytest.approx(m_exact, abs=0.01 * sd_exact), site
        assert sd == pytest.approx(sd_exact, rel=0.01), site


# ---- the oracles of the models without a closed form ---------------------------------------------------
def test_importance_oracle_reproduces_an_exact_gaussian_posterior():
    """Linear regression with a known sigma has a Gaussian posterior in closed form: the importance
    sampler's moments must equal it (means within 4 of its own SE, sds within 3%)."""
    from inference import fit
    from ppl.checks import importance_posterior
    from ppl_models.regression import gaussian_posterior

    data = {**ppl_models.get("linear_regression").default_data(seed=0), "sigma": 1.0}
    post = fit("linear_regression", data, method="map", progress=False)  # only its model and data are used
    moments, ess = importance_posterior(post, num_draws=20_000)
    mean, cov = gaussian_posterior(data["X"], data["y"], 1.0)
    got_mean = np.concatenate([np.atleast_1d(moments["intercept"][0]), moments["coef"][0]])
    got_sd = np.concatenate([np.atleast_1d(moments["intercept"][1]), moments["coef"][1]])
    se = np.concatenate([np.atleast_1d(moments["intercept"][2]), moments["coef"][2]])
    assert ess > 5000
    assert (np.abs(got_mean - mean) < 4 * se).all()
    np.testing.assert_allclose(got_sd, np.sqrt(np.diag(cov)), rtol=0.03)


@pytest.fixture(scope="module")
def logistic_oracle():
    from inference import fit
    from ppl.checks import importance_posterior

    data = ppl_models.get("logistic_regression").default_data(seed=0)
    post = fit("logistic_regression", data, method="map", progress=False)
    moments, ess = importance_posterior(post)
    return post, data, moments


def _fake_draws(moments, shift=0.0, widen=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {site: mean + shift * sd + widen * sd * rng.standard_normal((2, 2000) + np.shape(mean))
            for site, (mean, sd, _) in moments.items()}


@pytest.mark.parametrize("shift, widen, passes", [(0.0, 1.0, True), (0.5, 1.0, False), (0.0, 1.3, False)])
def test_importance_check_passes_right_draws_and_fails_wrong_ones(logistic_oracle, shift, widen, passes):
    post, data, moments = logistic_oracle
    fake = SimpleNamespace(method="nuts", samples=_fake_draws(moments, shift, widen), model=post.model,
                           data=post.data, structure=post.structure)
    result = run_check("logistic_regression", fake, data)
    assert result.passed == passes, result.text


@pytest.mark.parametrize("shift, passes", [(0.0, True), (0.5, False)])
def test_coin_mixture_quadrature_check(shift, passes):
    from ppl.checks import coin_mixture_grid

    data = ppl_models.get("coin_mixture").default_data(seed=0)
    # a wide fixed grid (independent of any draws) gives the truth the fake draws are built from
    grid = coin_mixture_grid(data["flips"], 1.0, 1.0, 1.0, {"theta": [0.25, 0.75], "pi": 0.45},
                             {"theta": [0.2, 0.2], "pi": 0.3}, points=81)
    rng = np.random.default_rng(0)
    (m1, s1), (m2, s2) = grid["theta"]
    mp, sp = grid["pi"]
    theta = np.stack([m1 + shift * s1 + s1 * rng.standard_normal((2, 2000)),
                      m2 + s2 * rng.standard_normal((2, 2000))], -1)
    pi0 = mp + sp * rng.standard_normal((2, 2000))
    fake = _posterior("nuts", theta=theta, pi=np.stack([pi0, 1 - pi0], -1))
    result = run_check("coin_mixture", fake, data)
    assert result.passed == passes, result.text


@pytest.mark.parametrize("shift, passes", [(0.0, True), (3.0, False)])
def test_gmm_check_centres_on_scikit_learn(shift, passes):
    from sklearn.mixture import GaussianMixture

    data = ppl_models.get("gmm").default_data(seed=0)
    em = GaussianMixture(2, tol=1e-10, max_iter=2000, random_state=0).fit(data["x"].astype(float)[:, None])
    order = np.argsort(em.means_.ravel())
    rng = np.random.default_rng(0)

    def around(value, sd):
        return value + sd * rng.standard_normal((2, 1000, len(value)))

    fake = _posterior("nuts", weights=around(em.weights_[order], 0.04),
                      locs=around(em.means_.ravel()[order] + np.array([shift * 0.15, 0.0]), 0.15),
                      scales=around(np.sqrt(em.covariances_.ravel()[order]), 0.1))
    result = run_check("gmm", fake, data)
    assert result.passed == passes, result.text


@pytest.mark.parametrize("shift, passes", [(0.0, True), (0.3, False)])
def test_factor_analysis_check_centres_the_implied_covariance_on_scikit_learn(shift, passes):
    """Draws of (W, psi) around scikit-learn's FactorAnalysis estimate pass; W shifted by 0.3 fails."""
    from sklearn.decomposition import FactorAnalysis

    data = ppl_models.get("factor_analysis").default_data(seed=0)
    fa = FactorAnalysis(n_components=2, tol=1e-10, max_iter=20000).fit(data["x"].astype(float))
    rng = np.random.default_rng(0)
    W = fa.components_.T + shift + 0.02 * rng.standard_normal((2, 500, 6, 2))
    psi = fa.noise_variance_ * np.exp(0.05 * rng.standard_normal((2, 500, 6)))
    result = run_check("factor_analysis", _posterior("nuts", W=W, psi=psi), data)
    assert result.passed == passes, result.text


def test_ppca_check_against_tipping_bishop():
    from ppl_models.factor_analysis import ppca_closed_form

    data = ppl_models.get("ppca").default_data(seed=0)
    W, sigma2 = ppca_closed_form(data["x"].astype(float), 2)
    rng = np.random.default_rng(0)
    sigma = np.sqrt(sigma2) * np.exp(0.03 * rng.standard_normal((2, 500)))
    right = _posterior("nuts", W=W + 0.02 * rng.standard_normal((2, 500) + W.shape), sigma=sigma)
    wrong = _posterior("nuts", W=1.5 * W + 0.02 * rng.standard_normal((2, 500) + W.shape), sigma=sigma)
    assert run_check("ppca", right, data).passed
    assert not run_check("ppca", wrong, data).passed


@pytest.mark.parametrize("name, untrained_steps", [("vae", 5), ("graph_vae", 3)])
def test_deep_model_check_fails_an_untrained_network(name, untrained_steps, monkeypatch):
    """The VAE's held-out ELBO must beat independent pixels, the GraphVAE's held-out reconstructions must
    beat chance: a few SVI steps do not (the demo's budget does: `make run` above passes both checks)."""
    import inference.optim
    from inference import fit

    # the fit's Pareto-k diagnostic (1,000 draws of model and guide, 25 s for the GraphVAE) is not under test
    monkeypatch.setattr(inference.optim, "NUM_DRAWS", 50)
    data = ppl_models.get(name).default_data(seed=0)
    untrained = fit(name, data, method="svi", num_steps=untrained_steps, num_samples=10, progress=False)
    result = run_check(name, untrained, data)
    assert result is not None and not result.passed, result.text


def test_mcse_is_arviz_s_whether_or_not_numba_is_installed():
    """`mcse_mean` / `mcse_sd` are ArviZ's estimates, not the independent-draws fallback, also where numba is
    installed (ArviZ 0.23's numba path of ``method="sd"`` fails on numpy 2, and returns 1-element arrays)."""
    import arviz as az
    from arviz.utils import Numba

    from ppl.checks import mcse_mean, mcse_sd

    rng = np.random.default_rng(0)
    draws = np.cumsum(rng.normal(size=(4, 400)), axis=1) * 0.05 + rng.normal(size=(4, 400))  # autocorrelated
    numba = Numba.numba_flag
    Numba.disable_numba()
    try:
        want_mean, want_sd = (np.asarray(az.mcse(draws, method=m)).item() for m in ("mean", "sd"))
    finally:
        if numba:
            Numba.enable_numba()
    assert mcse_mean(draws) == pytest.approx(want_mean, rel=1e-6)
    assert mcse_sd(draws) == pytest.approx(want_sd, rel=1e-6)
    assert mcse_mean(draws) > 1.2 * draws.std() / np.sqrt(draws.size)  # (not the independent-draws formula)
