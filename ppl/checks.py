"""Oracle checks: a fitted posterior compared with an answer computed another way.

A check is registered under a model's name and called as ``check(posterior, data) -> Check`` (a
``(passed, text)`` pair). The oracle is something the engines do not share: a closed form (the coin's
conjugate Beta), another library (pgmpy's variable elimination, scikit-learn), or reference draws.
Tolerances come from the Monte-Carlo standard error of the draws (``az.mcse``), so a check fails when the
engine is wrong, not when it is unlucky; point estimates (MAP, MLE) are compared with a small numerical
tolerance instead.

Adding a check for a new model is one function in this module:

    @register_check("linear_regression")
    def _linear_regression(post, data):
        ...compute the oracle...
        return combine([within_mcse("coef[0]", post.samples["coef"][..., 0], truth[0]), ...])

`run_check(name, posterior, data)` returns ``None`` when no check is registered for `name`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

Z = 4.0  # how many Monte-Carlo standard errors a mean may be off: a 1 in 16,000 chance when all is well


class Check(NamedTuple):
    """The outcome of one oracle check: ``passed`` and a sentence saying what was compared."""

    passed: bool
    text: str


CheckFn = Callable[[Any, dict], "Check | None"]
CHECKS: dict[str, CheckFn] = {}


def register_check(name: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: register `fn(posterior, data) -> Check` as the oracle check of model `name`."""

    def wrap(fn: CheckFn) -> CheckFn:
        if name in CHECKS and CHECKS[name] is not fn:
            raise ValueError(f"an oracle check for {name!r} is already registered")
        CHECKS[name] = fn
        return fn

    return wrap


def has_check(name: str) -> bool:
    return name in CHECKS


def run_check(name: str, posterior: Any, data: dict) -> Check | None:
    """The oracle check of model `name` on a fitted `posterior`; ``None`` when the model has none, or
    none for this configuration (a check returns ``None`` when no oracle applies, e.g. a prior with no
    closed form)."""
    fn = CHECKS.get(name)
    if fn is None:
        return None
    return fn(posterior, data)


# ---- building blocks -------------------------------------------------------------------------------
def mcse_mean(draws: np.ndarray) -> float:
    """Monte-Carlo standard error of the mean of draws shaped (chain, draw): ``az.mcse`` (batch means),
    or the independent-draws formula when ArviZ cannot estimate it (a constant chain, too few draws)."""
    import arviz as az

    draws = np.asarray(draws, dtype=float)
    try:
        value = float(az.mcse(draws, method="mean"))
    except (ValueError, TypeError, IndexError):
        value = float("nan")
    if not np.isfinite(value):
        value = float(np.std(draws) / math.sqrt(max(draws.size, 1)))
    return value


def within_mcse(label: str, draws: np.ndarray, truth: float, z: float = Z) -> Check:
    """The posterior mean of `draws` (chain, draw) is within `z` MCSE of `truth`."""
    draws = np.asarray(draws, dtype=float)
    mean, se = float(draws.mean()), mcse_mean(draws)
    err = abs(mean - truth)
    ok = err <= z * se if se > 0 else err <= 1e-12
    return Check(bool(ok), f"{label}: mean {mean:.4g} vs exact {truth:.4g}, off by {err:.2g} "
                           f"{'<=' if ok else '>'} {z:g} MCSE = {z * se:.2g}")


def within_relative(label: str, value: float, truth: float, rel: float) -> Check:
    """`value` is within a relative tolerance `rel` of `truth`."""
    err = abs(value - truth) / abs(truth) if truth else abs(value)
    ok = err <= rel
    return Check(bool(ok), f"{label}: {value:.4g} vs exact {truth:.4g}, {100 * err:.1f}% off "
                           f"{'<=' if ok else '>'} {100 * rel:g}%")


def close(label: str, value: float, truth: float, atol: float) -> Check:
    """A point estimate equals `truth` up to a numerical tolerance `atol`."""
    err = abs(float(value) - float(truth))
    ok = err <= atol
    return Check(bool(ok), f"{label}: {float(value):.6g} vs exact {float(truth):.6g}, off by {err:.2g} "
                           f"{'<=' if ok else '>'} {atol:g}")


def combine(checks: Sequence[Check], oracle: str = "") -> Check:
    """All of `checks` must pass; the text lists each, prefixed by what the oracle is."""
    passed = all(c.passed for c in checks)
    body = "; ".join(c.text for c in checks)
    return Check(passed, f"{oracle}: {body}" if oracle else body)


# ---- Beta posteriors: the coin, and the class prior of the two-class model --------------------------
def beta_check(site: str, draws: np.ndarray, method: str, exact: Any, frequency: float) -> Check:
    """A site whose posterior is exactly the frozen ``scipy.stats.beta`` `exact`.

    MCMC: mean within 4 MCSE, sd within 10%. SVI: the Gaussian guide on the logit scale is an
    approximation, so its mean may also be off by 10% of the posterior sd and its sd by 20%. MAP: the
    Beta mode; MLE: the observed `frequency` (both to 1e-3: the optimum of a float32 objective is only
    resolved to about 2e-4)."""
    a, b = exact.args
    p = np.asarray(draws, dtype=float)
    oracle = f"exact Beta({a:g}, {b:g}) posterior of {site}"
    if method == "mle":
        return combine([close(site, p.ravel()[0], frequency, 1e-3)], "MLE = the observed frequency")
    if method == "map":
        if a <= 1 or b <= 1:
            return Check(True, f"{oracle}: its mode is on the boundary; nothing to compare")
        return combine([close(site, p.ravel()[0], (a - 1) / (a + b - 2), 1e-3)], f"mode of the {oracle}")
    mean, sd = float(exact.mean()), float(exact.std())
    if method == "svi":
        err, se = abs(p.mean() - mean), mcse_mean(p)
        tol = Z * se + 0.1 * sd
        first = Check(bool(err <= tol), f"{site}: mean {p.mean():.4g} vs exact {mean:.4g}, off by {err:.2g} "
                                        f"{'<=' if err <= tol else '>'} 4 MCSE + 0.1 sd = {tol:.2g}")
        return combine([first, within_relative(f"sd({site})", float(p.std()), sd, 0.20)], f"{oracle} (variational)")
    return combine([within_mcse(site, p, mean), within_relative(f"sd({site})", float(p.std()), sd, 0.10)], oracle)


@register_check("coin")
def _coin(post: Any, data: dict) -> Check:
    """p ~ Beta(alpha + heads, beta + tails) exactly."""
    from ppl_models.coin import exact_posterior

    flips = np.asarray(data["flips"], dtype=float)
    exact = exact_posterior(flips, float(data.get("alpha", 1.0)), float(data.get("beta", 1.0)))
    return beta_check("p", post.samples["p"], post.method, exact, float(flips.mean()))


@register_check("two_class")
def _two_class(post: Any, data: dict) -> Check:
    """The class prior rho ~ Beta(alpha + n_1, beta + n_0) exactly (rho touches only the labels); the
    class-conditional means and scales have no closed form under their priors, so they are not checked."""
    from ppl_models.two_class import rho_posterior

    y = np.asarray(data["y"], dtype=float)
    exact = rho_posterior(y, float(data.get("alpha", 1.0)), float(data.get("beta", 1.0)))
    return beta_check("rho", post.samples["rho"], post.method, exact, float(y.mean()))


# ---- linear regression: the exact posterior, by quadrature over sigma ---------------------------------
def linear_regression_posterior(data: dict, grid_size: int = 400) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact posterior means and sds of `linear_regression` with Normal prior and Normal noise.

    Given sigma, (intercept, coef) is Gaussian (`ppl_models.regression.gaussian_posterior`); sigma's own
    posterior, p(sigma | y) proportional to p(sigma) p(y | sigma), is one-dimensional, so it is tabulated
    on a grid of log sigma, with p(y | sigma) = p(y | beta, sigma) p(beta) / p(beta | y, sigma) at the
    conditional mean. Mixing the conditional Gaussians over the grid gives the exact moments.
    Returns ``{site: (mean, sd)}`` for intercept, coef and sigma (sigma absent when it is given).
    """
    from scipy import stats

    from ppl_models.regression import gaussian_posterior

    X, y = np.asarray(data["X"], dtype=float), np.asarray(data["y"], dtype=float)
    n, d = X.shape
    prior_scale = float(data.get("prior_scale", 1.0))
    standardize = bool(data.get("standardize", False))
    y_loc, y_scale = float(y.mean()), float(y.std()) or 1.0
    s0 = float(data["intercept_scale"]) if data.get("intercept_scale") is not None else 2.5 * y_scale
    sd_x = np.where(X.std(0) > 0, X.std(0), 1.0)
    coef_scale = prior_scale / sd_x if standardize else np.full(d, prior_scale)

    def conditional(sigma: float):
        return gaussian_posterior(X, y, sigma, prior_scale=prior_scale, intercept_scale=s0, standardize=standardize)

    if data.get("sigma") is not None:
        mean, cov = conditional(float(data["sigma"]))
        sd = np.sqrt(np.diag(cov))
        return {"intercept": (mean[0], sd[0]), "coef": (mean[1:], sd[1:])}

    def log_evidence(sigma: float, mean: np.ndarray, cov: np.ndarray) -> float:
        loglik = stats.norm(X @ mean[1:] + mean[0], sigma).logpdf(y).sum()
        logprior = (stats.norm(y_loc - mean[1:] @ X.mean(0), s0).logpdf(mean[0])
                    + stats.norm(0, coef_scale).logpdf(mean[1:]).sum())
        logpost = -0.5 * (d + 1) * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(cov)[1]
        return loglik + logprior - logpost

    Z1 = np.column_stack([np.ones(n), X])
    resid = y - Z1 @ np.linalg.lstsq(Z1, y, rcond=None)[0]
    centre = max(float(np.sqrt(resid @ resid / max(n - d - 1, 1))), 1e-6)
    log_sigma = np.log(centre) + np.linspace(-1.5, 1.5, grid_size)  # sigma from 0.22 to 4.5 times the OLS value
    sigma_prior = stats.halfcauchy(scale=float(data.get("sigma_scale") or y_scale))
    means, covs, logw = [], [], []
    for ls in log_sigma:
        sigma = float(np.exp(ls))
        mean, cov = conditional(sigma)
        means.append(mean)
        covs.append(cov)
        logw.append(log_evidence(sigma, mean, cov) + sigma_prior.logpdf(sigma) + ls)  # + ls: d sigma = sigma d log sigma
    logw = np.asarray(logw)
    w = np.exp(logw - logw.max())
    w /= w.sum()  # an even grid in log sigma: the weights are the quadrature
    if max(w[0], w[-1]) > 1e-8:
        raise ValueError("the posterior of sigma reaches the edge of the quadrature grid")
    means, covs = np.asarray(means), np.asarray(covs)
    mean = w @ means
    second = np.einsum("g,gij->ij", w, covs) + np.einsum("g,gi,gj->ij", w, means, means)
    sd = np.sqrt(np.diag(second) - mean**2)
    sigmas = np.exp(log_sigma)
    s_mean = float(w @ sigmas)
    s_sd = float(np.sqrt(w @ sigmas**2 - s_mean**2))
    return {"intercept": (mean[0], sd[0]), "coef": (mean[1:], sd[1:]), "sigma": (s_mean, s_sd)}


@register_check("linear_regression")
def _linear_regression(post: Any, data: dict) -> Check | None:
    """MCMC draws against the exact posterior (Normal prior and noise): each mean within 4 MCSE, each sd
    within 10%. Other priors and noises have no closed form, and point estimates are not posteriors."""
    if data.get("prior", "normal") != "normal" or data.get("noise", "normal") != "normal":
        return None
    if post.method not in ("nuts", "hmc"):
        return None
    exact = linear_regression_posterior(data)
    checks = []
    for site, (mean, sd) in exact.items():
        draws = np.asarray(post.samples[site], dtype=float)
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
        mean, sd = np.atleast_1d(mean), np.atleast_1d(sd)
        for j in range(flat.shape[-1]):
            label = f"{site}[{j}]" if draws.ndim > 2 else site
            checks.append(within_mcse(label, flat[..., j], float(mean[j])))
            checks.append(within_relative(f"sd({label})", float(flat[..., j].std()), float(sd[j]), 0.10))
    bad = [c.text for c in checks if not c.passed]
    oracle = "exact posterior (Gaussian given sigma, quadrature over sigma)"
    if bad:
        return Check(False, f"{oracle}: " + "; ".join(bad))
    return Check(True, f"{oracle}: all {len(checks) // 2} means within {Z:g} MCSE and sds within 10% ("
                       + "; ".join(c.text for c in checks[:2]) + "; ...)")


# ---- Bayesian networks: pgmpy's variable elimination -------------------------------------------------
def _pgmpy_marginals(net: Any, variables: list[str], evidence: dict[str, str]) -> dict[str, dict[str, float]]:
    """Posterior marginals by pgmpy's variable elimination on the network rebuilt from its CPTs."""
    import warnings

    with warnings.catch_warnings():  # pgmpy announces deprecations of modules we do not use
        warnings.simplefilter("ignore", FutureWarning)
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.inference import VariableElimination
        from pgmpy.models import DiscreteBayesianNetwork

    model = DiscreteBayesianNetwork(net.edges)
    model.add_nodes_from(net.variables)
    for var in net.variables:
        parents = net.parents[var]
        card = net.cardinality(var)
        table = net.cpts[var].double().numpy().reshape(-1, card).T  # pgmpy: (card, product of parent cards)
        model.add_cpds(TabularCPD(var, card, table, evidence=parents or None,
                                  evidence_card=[net.cardinality(p) for p in parents] or None,
                                  state_names={v: net.states[v] for v in [var, *parents]}))
    infer = VariableElimination(model)
    out = {}
    for var in variables:
        factor = infer.query([var], evidence=evidence or None, show_progress=False)
        out[var] = {s: float(factor.get_value(**{var: s})) for s in net.states[var]}
    return out


@register_check("bayes_net")
def _bayes_net(post: Any, data: dict) -> Check:
    """Each hidden node's posterior state frequencies against pgmpy's variable elimination (or, without
    pgmpy, the network's own exact contraction), within 4 binomial standard errors of the draws."""
    from ppl_models.bayes_net import load

    net = load(data.get("network", "sprinkler"))
    evidence = net.check_evidence(data.get("evidence"))
    hidden = [v for v in net.variables if v not in evidence]
    if post.method == "map":
        mpe = net.mpe(evidence)
        got = {v: net.states[v][int(np.asarray(post.samples[v]).ravel()[0])] for v in hidden}
        ok = got == {v: mpe[v] for v in hidden}
        return Check(ok, f"most probable explanation {mpe if ok else got} "
                         f"{'equals' if ok else 'differs from'} the exact max-product one {mpe}")
    try:
        exact, oracle = _pgmpy_marginals(net, hidden, evidence), "pgmpy variable elimination"
    except ImportError:
        exact, oracle = net.query(hidden, evidence), "exact enumeration (pgmpy is not installed)"
    checks, worst = [], (0.0, "")
    for var in hidden:
        draws = np.asarray(post.samples[var])
        for i, state in enumerate(net.states[var]):
            truth = exact[var][state]
            freq = float((draws == i).mean())
            se = math.sqrt(truth * (1 - truth) / draws.size)
            ok = abs(freq - truth) <= Z * se + 1e-12
            ratio = abs(freq - truth) / se if se > 0 else (0.0 if ok else math.inf)
            if ratio >= worst[0]:
                worst = (ratio, f"P({var}={state}) {freq:.3f} vs {truth:.3f}")
            checks.append(Check(ok, f"P({var}={state}) {freq:.3f} vs {truth:.3f}"))
    bad = [c.text for c in checks if not c.passed]
    total = len(checks)
    if bad:
        return Check(False, f"{oracle}: {len(bad)} of {total} marginals off by more than {Z:g} standard errors: "
                            + "; ".join(bad))
    return Check(True, f"{oracle}: all {total} marginals of {', '.join(hidden)} within {Z:g} standard errors "
                       f"of {draws.size} draws (largest: {worst[1]}, {worst[0]:.1f} se)")
