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
def _mcse(draws: np.ndarray, method: str, independent: float) -> float:
    """``az.mcse(draws, method=method)`` (`inference.arviz_compat.mcse`, ArviZ 0.x or 1.x), or the
    independent-draws formula `independent` when ArviZ cannot estimate it (a constant chain, too few draws)."""
    from inference import arviz_compat as azc

    try:
        value = float(np.asarray(azc.mcse(draws, method=method)).item())  # (1 element where numba is installed)
    except (ValueError, TypeError, IndexError):
        value = float("nan")
    return value if np.isfinite(value) else independent


def mcse_mean(draws: np.ndarray) -> float:
    """Monte-Carlo standard error of the mean of draws shaped (chain, draw): ``az.mcse`` (batch means),
    or sd / sqrt(n) when ArviZ cannot estimate it."""
    draws = np.asarray(draws, dtype=float)
    return _mcse(draws, "mean", float(np.std(draws) / math.sqrt(max(draws.size, 1))))


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


# ---- a posterior with no closed form: importance sampling around the mode ------------------------------
def importance_posterior(post: Any, num_draws: int = 20_000, seed: int = 0, df: float = 5.0
                         ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """Posterior moments of every continuous site of a fitted model by self-normalised importance sampling.

    The proposal is a multivariate Student-t (`df` degrees of freedom) in the unconstrained space, centred
    at the posterior mode (found by L-BFGS on the model's log density) with the inverse Hessian there,
    widened by 1.2, as its scale: heavier-tailed than the posterior, so the weights have finite variance.
    Nothing is shared with the sampler but the log density itself.

    Returns ``({site: (mean, sd, se of the mean)}, importance ESS)``; arrays have the site's shape.
    """
    import torch
    from scipy import optimize, stats

    from inference.fast import Potential

    dtype = torch.float64
    with _default_dtype(dtype):
        data = {k: (v.to(dtype) if hasattr(v, "is_floating_point") and v.is_floating_point() else v)
                for k, v in post.data.items()}
        potential = Potential(post.model, data, post.structure, num_chains=1, compile=False)
        potential.prepare(0.5 * torch.randn(3, potential.dim, dtype=dtype,
                                            generator=torch.Generator().manual_seed(seed)))

        def energy(z: np.ndarray) -> tuple[float, np.ndarray]:
            U, grad = potential.eager(torch.as_tensor(z, dtype=dtype).unsqueeze(0))
            return float(U[0]), grad[0].numpy()

        result = optimize.minimize(energy, np.zeros(potential.dim), jac=True, method="L-BFGS-B",
                                   options={"maxiter": 5000, "gtol": 1e-8})
        mode = torch.as_tensor(result.x, dtype=dtype)
        hessian = torch.autograd.functional.hessian(lambda z: -potential.one_chain_log_density(z), mode)
        cov = np.linalg.inv(0.5 * (hessian.numpy() + hessian.numpy().T)) * 1.2 ** 2
        proposal = stats.multivariate_t(loc=result.x, shape=cov, df=df, seed=seed)
        z = proposal.rvs(size=num_draws).reshape(num_draws, potential.dim)
        log_q = proposal.logpdf(z)
        zt = torch.as_tensor(z, dtype=dtype)
        with torch.no_grad():
            log_p = torch.cat([potential.log_density(chunk) for chunk in zt.split(2000)]).numpy()
            values = {k: v.numpy() for k, v in potential.constrain(zt).items()}
    log_w = np.where(np.isfinite(log_p), log_p - log_q, -np.inf)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = float(1.0 / (w ** 2).sum())
    moments = {}
    for name, x in values.items():
        wx = w.reshape((-1,) + (1,) * (x.ndim - 1))
        mean = (wx * x).sum(0)
        var = (wx * (x - mean) ** 2).sum(0)
        se = np.sqrt((wx ** 2 * (x - mean) ** 2).sum(0))
        moments[name] = (mean, np.sqrt(var), se)
    return moments, ess


class _default_dtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        import torch

        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        import torch

        torch.set_default_dtype(self.saved)


def mcse_sd(draws: np.ndarray) -> float:
    """Monte-Carlo standard error of the sd of draws shaped (chain, draw) (``az.mcse(method="sd")``), or
    sd / sqrt(2 n) when ArviZ cannot estimate it."""
    draws = np.asarray(draws, dtype=float)
    return _mcse(draws, "sd", float(np.std(draws) / math.sqrt(2 * max(draws.size, 1))))


def against_moments(samples: dict[str, np.ndarray], exact: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                    oracle: str) -> Check:
    """Every scalar of every site in `exact` ({site: (mean, sd, oracle se)}): the mean within 4 combined
    standard errors (the draws' MCSE and the oracle's own), the sd within 4 combined standard errors too
    (``az.mcse(method="sd")`` and sd / sqrt(2 ESS) of the oracle)."""
    checks, worst = [], (-1.0, "")
    ess = exact.pop("_ess", None)
    for site, (mean, sd, se) in exact.items():
        draws = np.asarray(samples[site], dtype=float)
        flat = draws.reshape(draws.shape[:2] + (-1,))
        mean, sd, se = (np.atleast_1d(np.asarray(a, dtype=float)).ravel() for a in (mean, sd, se))
        for j in range(flat.shape[-1]):
            label = f"{site}[{j}]" if flat.shape[-1] > 1 else site
            d = flat[..., j]
            tol_mean = Z * math.hypot(mcse_mean(d), se[j])
            sd_se = sd[j] / math.sqrt(2 * ess) if ess else 0.0
            tol_sd = Z * math.hypot(mcse_sd(d), sd_se)
            err_mean, err_sd = abs(d.mean() - mean[j]), abs(d.std() - sd[j])
            for what, err, tol, got, want in (("mean", err_mean, tol_mean, d.mean(), mean[j]),
                                              ("sd", err_sd, tol_sd, d.std(), sd[j])):
                text = f"{what}({label}) {got:.4g} vs {want:.4g}"
                checks.append(Check(bool(err <= tol), f"{text}, off by {err:.2g} {'<=' if err <= tol else '>'} "
                                                      f"{Z:g} SE = {tol:.2g}"))
                if tol > 0 and err / tol > worst[0]:
                    worst = (err / tol, text)
    bad = [c.text for c in checks if not c.passed]
    if bad:
        return Check(False, f"{oracle}: " + "; ".join(bad))
    return Check(True, f"{oracle}: all {len(checks) // 2} means and sds within {Z:g} standard errors "
                       f"(closest call: {worst[1]}, {worst[0] * Z:.1f} SE)")


def _importance_check(post: Any, data: dict) -> Check | None:
    if post.method not in ("nuts", "hmc"):
        return None
    moments, ess = importance_posterior(post)
    if ess < 1000:
        return Check(False, f"importance sampling oracle unusable: effective sample size {ess:.0f} < 1000")
    return against_moments(post.samples, {**moments, "_ess": ess},
                           f"importance sampling around the mode (Student-t proposal, ESS {ess:.0f} of 20000)")


register_check("logistic_regression")(_importance_check)
register_check("softmax_regression")(_importance_check)


# ---- the mixture of Bernoullis: quadrature on a grid -------------------------------------------------
def coin_mixture_grid(flips: np.ndarray, alpha: float, beta: float, gamma: float, centre: dict,
                      width: dict, points: int = 61) -> dict[str, np.ndarray]:
    """Posterior means and sds of (theta_1 < theta_2, pi_1) for K = 2 coins by quadrature on a 3-D grid.

    The tosses of observation j are Binomial given its coin, so the likelihood needs only the head counts;
    the prior is symmetric in the coins, so the relabelled posterior is the posterior on theta_1 < theta_2.
    The grid spans ``centre +- width`` per parameter (clipped to (0, 1)); it must hold the posterior:
    a grid whose faces carry mass raises ValueError.
    """
    from scipy.special import xlogy

    heads = flips.sum(1)
    tosses = flips.shape[1]

    def axis(name, i=None):
        c = centre[name] if i is None else centre[name][i]
        h = width[name] if i is None else width[name][i]
        return np.linspace(max(c - h, 1e-6), min(c + h, 1 - 1e-6), points)

    T1, T2, P1 = np.meshgrid(axis("theta", 0), axis("theta", 1), axis("pi"), indexing="ij")

    def log_binom(theta):
        return xlogy(heads, theta[..., None]) + xlogy(tosses - heads, 1 - theta[..., None])

    log_post = np.logaddexp(np.log(P1)[..., None] + log_binom(T1), np.log1p(-P1)[..., None] + log_binom(T2)).sum(-1)
    log_post += ((alpha - 1) * (np.log(T1) + np.log(T2)) + (beta - 1) * (np.log1p(-T1) + np.log1p(-T2))
                 + (gamma - 1) * (np.log(P1) + np.log1p(-P1)))
    log_post = np.where(T1 < T2, log_post, -np.inf)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    for ax in range(3):
        if np.take(w, [0, -1], axis=ax).sum() > 1e-6:
            raise ValueError("the quadrature grid does not hold the posterior (mass on its faces)")

    def moments(v):
        m = float((w * v).sum())
        return m, float(np.sqrt(max((w * v ** 2).sum() - m ** 2, 0.0)))

    return {"theta": [moments(T1), moments(T2)], "pi": moments(P1)}


@register_check("coin_mixture")
def _coin_mixture(post: Any, data: dict) -> Check | None:
    """Two coins, several tosses each: relabelled MCMC draws against grid quadrature of the exact posterior."""
    flips = np.asarray(data["flips"], dtype=float)
    if post.method not in ("nuts", "hmc") or int(data.get("K", 2)) != 2 or flips.ndim != 2:
        return None
    from ppl_models.coin_mixture import relabel

    s = relabel(post.samples)
    theta, pi0 = np.asarray(s["theta"], dtype=float), np.asarray(s["pi"], dtype=float)[..., 0]
    # the grid is centred on the draws but spans 10 of their sds each way: where it is placed does not
    # change the answer as long as it holds the posterior, which the quadrature itself verifies
    centre = {"theta": theta.mean((0, 1)), "pi": pi0.mean()}
    width = {"theta": 10 * theta.std((0, 1)) + 1e-3, "pi": 10 * pi0.std() + 1e-3}
    grid = coin_mixture_grid(flips, float(data.get("alpha", 1.0)), float(data.get("beta", 1.0)),
                             float(data.get("gamma", 1.0)), centre, width)
    exact = {"theta": (np.array([m for m, _ in grid["theta"]]), np.array([v for _, v in grid["theta"]]),
                       np.zeros(2)),
             "pi": (np.array([grid["pi"][0], 1 - grid["pi"][0]]), np.array([grid["pi"][1]] * 2), np.zeros(2))}
    return against_moments(s, exact, "exact posterior by quadrature on a 61^3 grid (coins relabelled "
                                              "by bias)")


# ---- large-sample oracles: the posterior centres on scikit-learn's MLE (Bernstein-von Mises) ----------
def centred_on(label: str, draws: np.ndarray, mle: np.ndarray, sds: float = 2.0) -> list[Check]:
    """Each scalar's posterior mean lies within `sds` posterior sds (+ 4 MCSE) of the MLE: with many data
    points and weak priors the posterior is approximately N(MLE, inverse Fisher information), so the two
    differ by O(1/N) while the posterior sd is O(1/sqrt(N))."""
    draws = np.asarray(draws, dtype=float)
    flat = draws.reshape(draws.shape[:2] + (-1,))
    mle = np.asarray(mle, dtype=float).ravel()
    out = []
    for j in range(flat.shape[-1]):
        d = flat[..., j]
        tol = sds * d.std() + Z * mcse_mean(d)
        err = abs(d.mean() - mle[j])
        name = f"{label}[{j}]" if flat.shape[-1] > 1 else label
        out.append(Check(bool(err <= tol), f"{name}: mean {d.mean():.4g} vs MLE {mle[j]:.4g}, off by {err:.2g} "
                                          f"{'<=' if err <= tol else '>'} {sds:g} sd + {Z:g} MCSE = {tol:.2g}"))
    return out


def _summarise(checks: list[Check], oracle: str) -> Check:
    bad = [c.text for c in checks if not c.passed]
    if bad:
        return Check(False, f"{oracle}: " + "; ".join(bad))
    return Check(True, f"{oracle}: all {len(checks)} posterior means agree ({checks[0].text}; ...)")


@register_check("gmm")
def _gmm(post: Any, data: dict) -> Check | None:
    """1-D mixture under MCMC: weights, locations and scales centred on scikit-learn's EM estimate."""
    x = np.asarray(data["x"], dtype=float)
    if post.method not in ("nuts", "hmc") or x.ndim != 1:
        return None
    from sklearn.mixture import GaussianMixture

    K = int(data.get("K", 2))
    em = GaussianMixture(K, tol=1e-10, max_iter=2000, n_init=5, random_state=0).fit(x[:, None])
    order = np.argsort(em.means_.ravel())  # the model's locations are ordered
    mle = {"weights": em.weights_[order], "locs": em.means_.ravel()[order],
           "scales": np.sqrt(em.covariances_.ravel()[order])}
    checks = [c for site, value in mle.items() for c in centred_on(site, post.samples[site], value)]
    return _summarise(checks, "centred on scikit-learn's GaussianMixture MLE (within 2 posterior sds)")


def _factor_check(post: Any, data: dict, ppca: bool) -> Check | None:
    """The implied covariance W W^T + diag(psi) (W itself is identified only up to rotation): each entry's
    posterior mean within 3 posterior sds of the MLE's (scikit-learn FactorAnalysis / Tipping & Bishop)."""
    if post.method not in ("nuts", "hmc"):
        return None
    from ppl_models.factor_analysis import implied_covariance, ppca_closed_form

    x = np.asarray(data["x"], dtype=float)
    K = int(data.get("K", 2))
    if ppca:
        W, sigma2 = ppca_closed_form(x, K)
        mle, oracle = implied_covariance(W, sigma2), "Tipping & Bishop's closed-form PPCA MLE"
        C = implied_covariance(post.samples["W"], post.samples["sigma"] ** 2)
    else:
        from sklearn.decomposition import FactorAnalysis

        mle = FactorAnalysis(n_components=K, tol=1e-10, max_iter=20000).fit(x).get_covariance()
        oracle = "scikit-learn FactorAnalysis MLE"
        C = implied_covariance(post.samples["W"], post.samples["psi"])
    D = C.shape[-1]
    rows, cols = np.triu_indices(D)
    checks = centred_on("cov", C[..., rows, cols], mle[rows, cols], sds=3.0)
    return _summarise(checks, f"implied covariance centred on the {oracle} (within 3 posterior sds)")


register_check("factor_analysis")(lambda post, data: _factor_check(post, data, ppca=False))
register_check("ppca")(lambda post, data: _factor_check(post, data, ppca=True))


# ---- deep models: held-out likelihood against a baseline they must beat ---------------------------------
@register_check("vae")
def _vae(post: Any, data: dict) -> Check | None:
    """The held-out digits' ELBO (a lower bound of log p(x)) beats the exact held-out log-likelihood of the
    independent-pixel Bernoulli model fitted on the same training digits, by more than 4 standard errors."""
    if post.method != "svi" or post.data.get("likelihood", "bernoulli") != "bernoulli":
        return None
    import pyro

    from ppl_models import vae

    train, test = vae.digits_split(seed=0)
    x = np.asarray(data["x"], dtype=float)
    if x.shape != train.shape or not np.allclose(x, train):
        return None  # not the default digits: no held-out split to score
    pyro.set_rng_seed(0)
    with post.learned_parameters():
        elbo = vae.elbo_per_datum(post.data, test)
    gain = elbo - vae.bernoulli_baseline(train, test)
    se = float(gain.std(ddof=1) / math.sqrt(len(gain)))
    ok = gain.mean() > Z * se
    return Check(bool(ok), f"held-out ELBO {elbo.mean():.2f} nats per digit vs independent-pixel baseline "
                           f"{(elbo - gain).mean():.2f}: gain {gain.mean():.2f} {'>' if ok else '<='} {Z:g} SE = "
                           f"{Z * se:.2f} ({len(test)} held-out digits)")


@register_check("graph_vae")
def _graph_vae(post: Any, data: dict) -> Check | None:
    """The held-out family members (never seen in training) are reconstructed better than chance: per
    held-out graph, the balanced edge accuracy (the mean of the true-positive and true-negative rates over
    pairs of present nodes; 0.5 for Erdos-Renyi or any prediction that ignores the graph) minus 0.5; the
    mean gain over the graphs must exceed 4 standard errors. (The edge log-likelihood is no oracle here: a
    fully trained GraphVAE is over-confident on unseen members, below Erdos-Renyi; docs/deep_models.md.)"""
    if post.method != "svi":
        return None
    from ppl_models import graph_vae

    train, test = graph_vae.family_split(seed=0)
    default = graph_vae.graphs_to_data(train, max_nodes=10)
    if np.shape(data["adjacency"]) != np.shape(default["adjacency"]) or \
            not np.array_equal(np.asarray(data["adjacency"]), default["adjacency"]):
        return None  # not the default family: no held-out members to score
    with post.learned_parameters():
        accuracy = np.asarray([graph_vae.reconstruction_report(post.data, graph_vae.graphs_to_data([g], max_nodes=10))
                               ["model_balanced_accuracy"] for g in test])
    gain = accuracy - 0.5
    se = float(gain.std(ddof=1) / math.sqrt(len(gain)))
    ok = gain.mean() > Z * se
    return Check(bool(ok), f"held-out graphs (family members never trained on): balanced edge accuracy "
                           f"{accuracy.mean():.3f} against 0.5 for Erdos-Renyi: gain {gain.mean():.3f} "
                           f"{'>' if ok else '<='} {Z:g} SE = {Z * se:.3f} ({len(gain)} graphs)")
