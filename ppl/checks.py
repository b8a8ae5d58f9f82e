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


CheckFn = Callable[[Any, dict], Check]
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
    """The oracle check of model `name` on a fitted `posterior`; ``None`` when the model has none."""
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


# ---- the coin: conjugate Beta posterior ------------------------------------------------------------
@register_check("coin")
def _coin(post: Any, data: dict) -> Check:
    """Beta(alpha + heads, beta + tails) exactly. MCMC: mean within 4 MCSE, sd within 10%. SVI: the
    Gaussian guide on the logit scale is an approximation, so its mean may also be off by 10% of the
    posterior sd and its sd by 20%. MAP: the Beta mode; MLE: heads / N (both to 1e-3: the optimum of a
    float32 objective near 13 with curvature near 80 is only resolved to about 2e-4)."""
    from ppl_models.coin import exact_posterior

    flips = np.asarray(data["flips"], dtype=float)
    alpha, beta = float(data.get("alpha", 1.0)), float(data.get("beta", 1.0))
    exact = exact_posterior(flips, alpha, beta)
    a, b = exact.args
    p = np.asarray(post.samples["p"], dtype=float)
    oracle = f"exact Beta({a:g}, {b:g}) posterior"
    if post.method == "mle":
        return combine([close("p", p.ravel()[0], flips.mean(), 1e-3)], "MLE heads / N")
    if post.method == "map":
        if a <= 1 or b <= 1:
            return Check(True, f"{oracle}: its mode is on the boundary; nothing to compare")
        return combine([close("p", p.ravel()[0], (a - 1) / (a + b - 2), 1e-3)], f"mode of the {oracle}")
    mean, sd = float(exact.mean()), float(exact.std())
    if post.method == "svi":
        err, se = abs(p.mean() - mean), mcse_mean(p)
        tol = Z * se + 0.1 * sd
        first = Check(bool(err <= tol), f"p: mean {p.mean():.4g} vs exact {mean:.4g}, off by {err:.2g} "
                                        f"{'<=' if err <= tol else '>'} 4 MCSE + 0.1 sd = {tol:.2g}")
        return combine([first, within_relative("sd(p)", float(p.std()), sd, 0.20)], f"{oracle} (variational)")
    return combine([within_mcse("p", p, mean), within_relative("sd(p)", float(p.std()), sd, 0.10)], oracle)


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
