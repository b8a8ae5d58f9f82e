"""How good an approximation of the posterior is: the Pareto k of its importance ratios (PSIS).

A variational guide q, or the Gaussian a Laplace approximation puts at a MAP estimate, is a proposal for
importance sampling: with draws z_s from q, the ratios p(x, z_s) / q(z_s) tell how far q is from the
posterior. Pareto-smoothed importance sampling (Vehtari et al. 2015; for variational fits Yao et al.
2018, "Yes, but did it work?") fits a generalised Pareto distribution to the largest ratios; its shape
k reads:

- k < 0.5: q is close enough that its draws, reweighted, are posterior draws;
- 0.5 <= k <= 0.7: doubtful; the reweighted draws are usable, q's plain draws less so;
- k > 0.7: the ratios' tail is too heavy: q misses mass the posterior has (a mean-field guide on a
  correlated posterior, a funnel), and neither its draws nor their reweighting can be trusted.

The density p(x, z) is the suite's own batched potential (`inference.fast.Potential`): the program as
written, enumerated discrete sites summed out exactly, evaluated in the unconstrained space, vectorised
over the draws where the program allows it (one trace per draw otherwise). The smoothing and k come from
ArviZ (`az.psislw` in 0.x, arviz-stats' `psislw` in 1.x: `arviz_compat.psislw`). Pyro's `psis_diagnostic` computes the same k, but replays the model under the
guide's trace, so enumerated discrete sites are drawn from their prior instead of being summed out, and
it returns k alone, without the smoothed weights a reweighting needs.

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer.autoguide import AutoNormal
    >>> from inference.structure import inspect_model
    >>> def model(scale):
    ...     pyro.sample("x", dist.Normal(torch.zeros(2), scale).to_event(1))
    >>> def k(scale):  # an untrained AutoNormal: N(0, 1) in each coordinate
    ...     pyro.set_rng_seed(0)
    ...     data = {"scale": torch.tensor([1.0, scale])}
    ...     guide = AutoNormal(model, init_scale=1.0)
    ...     return guide_approximation(model, guide, data, inspect_model(model, data), "AutoNormal").pareto_k
    >>> k(0.8) < 0.5   # the guide wider than the posterior: bounded ratios
    True
    >>> k(2.0) > 0.7   # narrower: ratios exp(3 x^2 / 8), whose tail index is 0.75
    True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pyro import poutine

from ppl_models.errors import one_line

from . import arviz_compat as azc
from .fast import NotBatchable, Potential
from .structure import ModelStructure, full_size_plates
from .warm_start import laplace

NUM_DRAWS = 1000  # draws of a guide for k: the tail fit uses the largest min(S/5, 3 sqrt(S)) = 94 ratios
LAPLACE_DRAWS = 4000  # draws of a Laplace approximation (cheap: no guide to run); k-hat's upward bias and noise
# shrink with S: on a coin's Beta(151, 51) posterior in logit space, k-hat over four seeds was 0.42-0.60 from
# 1000 draws and 0.29-0.46 from 4000
CHUNK = 250  # draws evaluated at once on the batched path
K_DOUBTFUL = 0.5
K_UNRELIABLE = 0.7
LAPLACE_MAX_DIM = 500
MANY_LOCAL = 100  # plated latent values from which a guide's k is read as a joint over local codes  # a dense Hessian beyond this costs more than the fit


@dataclass(frozen=True)
class Approximation:
    """The PSIS diagnostic of one approximation of the posterior.

    Attributes:
        proposal: what was tested, in words ("the guide AutoNormal", "the Laplace approximation at the MAP").
        pareto_k: the estimated shape of the ratios' tail (nan when it could not be estimated).
        num_draws: draws of the proposal used.
        log_weights: the Pareto-smoothed, normalised log importance weights of those draws.
        draws: the proposal's draws, site -> (num_draws, *site shape) (for reweighted results).
    """

    proposal: str
    pareto_k: float
    num_draws: int
    log_weights: np.ndarray
    draws: dict[str, np.ndarray]
    advice: str = ""  # what to do about a doubtful or unreliable k, when the default advice does not fit

    @property
    def verdict(self) -> str:
        if not math.isfinite(self.pareto_k):
            return "unknown"
        if self.pareto_k > K_UNRELIABLE:
            return "unreliable"
        if self.pareto_k >= K_DOUBTFUL:
            return "doubtful"
        return "good"

    def describe(self) -> str:
        return (f"Pareto k of {self.proposal}: {self.pareto_k:.2f} ({self.verdict}; from {self.num_draws} "
                "importance ratios p/q; below 0.5 good, 0.5-0.7 doubtful, above 0.7 unreliable)")

    def problem(self, method: str) -> str | None:
        """The problem in words, with what to do, or None for a good k. For a MAP, whose estimate does not
        depend on the Laplace approximation, only an unreliable k (the posterior is far from Gaussian about
        its mode, so the estimate says little of it) is a problem; a doubtful one is a note."""
        verdict = self.verdict
        if verdict == "good" or (verdict == "doubtful" and method != "svi"):
            return None  # (a MAP estimate stands on its own; its Laplace k says how Gaussian the posterior is)
        better = self.advice or (
            "use method='nuts', or a guide that can follow correlations (guide='mvn'); reweight=True resamples "
            "the draws by their smoothed importance weights" if method == "svi" else
            "the posterior is far from a Gaussian about its mode, so the estimate alone says little of it: "
            "use method='nuts' for its mean and spread")
        if verdict == "unknown":
            return f"{method}: the Pareto k of {self.proposal} could not be estimated (non-finite importance ratios); {better}"
        if verdict == "unreliable":
            return (f"{method}: Pareto k {self.pareto_k:.2f} > {K_UNRELIABLE} for {self.proposal}: it misses mass the "
                    f"posterior has, so its draws and spread are not to be trusted; {better}")
        return (f"{method}: Pareto k {self.pareto_k:.2f} (between {K_DOUBTFUL} and {K_UNRELIABLE}) for {self.proposal}: "
                f"doubtful as a posterior; {better}")

    def resample(self, num_samples: int, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """`num_samples` draws resampled (systematic resampling) by the smoothed weights: (num_samples, ...)."""
        weights = np.exp(self.log_weights - np.max(self.log_weights))
        cumulative = np.cumsum(weights / weights.sum())
        points = (generator.uniform() + np.arange(num_samples)) / num_samples
        index = np.minimum(np.searchsorted(cumulative, points), self.num_draws - 1)
        generator.shuffle(index)
        return {k: v[index] for k, v in self.draws.items()}


def _flat(potential: Potential, values: dict[str, torch.Tensor], rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Site values (rows, *site shape) -> the flat unconstrained points (rows, dim) and log|dz/du| (rows,)."""
    parts, log_jac = [], torch.zeros(rows, dtype=potential.dtype)
    for s in potential.sites:
        x = values[s.name].to(potential.dtype)
        u = s.transform.inv(x)
        log_jac = log_jac + s.transform.log_abs_det_jacobian(u, x).reshape(rows, -1).sum(-1)
        parts.append(u.reshape(rows, -1))
    return torch.cat(parts, -1), log_jac


def log_density(potential: Potential, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) + log|J| at the flat points z (rows, dim): batched where the program allows it (checked
    against one plain trace per row on the first rows), one trace per row otherwise."""
    with torch.no_grad():
        try:
            potential.prepare(z[:4])
            return torch.cat([potential.log_density(z[i:i + CHUNK]) for i in range(0, len(z), CHUNK)])
        except NotBatchable:
            return potential.reference_log_density(z)


def _pareto(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalised log weights and k. The ratios are shifted to a maximum of 0 in float64
    first: a VAE's log ratios are near -34,000 in float32, where ArviZ's smoothing returned NaN weights
    and k 0.05 for ratios whose k is 17."""
    ratios = np.asarray(log_ratios, dtype=np.float64)
    ratios = np.where(np.isnan(ratios), -np.inf, ratios)
    finite = np.isfinite(ratios)
    if not finite.any():
        return np.full(len(ratios), -np.log(len(ratios))), math.nan
    ratios = ratios - ratios[finite].max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns for k > 0.7, which the result says in words
        smoothed, k = azc.psislw(ratios)
    smoothed = np.asarray(smoothed, dtype=float)
    if np.isnan(smoothed).any() or not math.isfinite(float(k)):
        return smoothed, math.nan
    return smoothed, float(k)


def _guide_draws(guide: Callable, data: dict, structure: ModelStructure, sites: list[str],
                 num_draws: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """`num_draws` draws of the guide's sites (num_draws, *site shape) and log q of each (num_draws,),
    one guide trace per draw (a guide may draw at any shape; this is the one path that cannot misread one)."""
    conditioned = poutine.condition(guide, structure.full_plates) if structure.full_plates else guide
    values: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    log_q = []
    with torch.no_grad(), full_size_plates(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(num_draws):
            trace = poutine.trace(conditioned).get_trace(**data)
            log_q.append(trace.log_prob_sum())
            for s in sites:
                values[s].append(trace.nodes[s]["value"])
    return {s: torch.stack(v) for s, v in values.items()}, torch.stack(log_q)


def guide_approximation(model: Callable, guide: Callable, data: dict, structure: ModelStructure, name: str,
                        num_draws: int = NUM_DRAWS) -> Approximation:
    """The PSIS diagnostic of a fitted guide: `num_draws` draws of q, their ratios p(x, z) / q(z), over
    all its latent values jointly (a VAE's local codes included: then the advice says what that means)."""
    potential = Potential(model, data, structure, num_chains=num_draws, compile=False)
    sites = [s.name for s in potential.sites]
    values, log_q = _guide_draws(guide, data, structure, sites, num_draws)
    z, log_jac = _flat(potential, values, num_draws)
    with full_size_plates():  # a mini-batch model is scored on all of its data, as its guide was drawn
        log_p = log_density(potential, z) - log_jac
    smoothed, k = _pareto((log_p - log_q.to(log_p.dtype)).numpy())
    # latent values one per data point (structure.local), or per node of a graph (plated, and many)
    plated = [n for n in values if structure.trace.nodes[n]["cond_indep_stack"]]
    local = sum(int(np.prod(structure.trace.nodes[n]["value"].shape)) for n in plated)
    advice = ""
    if any(n in structure.local for n in values) or local >= MANY_LOCAL:
        advice = (f"the ratios are taken over all {local:,} local latent values jointly (one or more per data point), "
                  "where small errors per data point add up: the guide's draws are no joint posterior sample, while "
                  "what it gives per data point (codes, reconstructions, the held-out ELBO) is judged by the "
                  "model's own measures; for the joint posterior use NUTS where the model allows it")
    return Approximation(f"the guide {name}", k, num_draws, smoothed,
                         {s: v.detach().cpu().numpy() for s, v in values.items()}, advice)


def _grad(f: Callable, u: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(u), u)
    return g.detach()


def _hessian(f: Callable, u: torch.Tensor) -> torch.Tensor:
    """The Hessian by plain autograd (a program may read its data in ways `torch.func` transforms refuse)."""
    with torch.enable_grad():
        return torch.autograd.functional.hessian(f, u.detach()).detach()


def _value_and_grad(potential: Potential, energy: Callable, z0: torch.Tensor) -> Callable:
    """U and dU/du at rows of points, as `warm_start.laplace` wants them: the batched potential where the
    program allows it (checked at `z0`), else one autograd pass per row."""
    try:
        potential.prepare(z0.expand(4, -1).clone())

        def batched(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            try:
                return potential.eager(z)
            except Exception:  # noqa: BLE001 (a row whose arithmetic fails: one row at a time, U = inf there)
                return potential.per_chain(z)

        return batched
    except NotBatchable:
        def by_rows(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            U = torch.stack([energy(row).detach() for row in z])
            return U, torch.stack([_grad(energy, row) for row in z])

        return by_rows


def laplace_approximation(model: Callable, data: dict, structure: ModelStructure, estimate: dict[str, np.ndarray],
                          num_draws: int = LAPLACE_DRAWS, seed: int = 0, psis: bool = True) -> tuple[Approximation | None, dict]:
    """The PSIS diagnostic of the Laplace approximation at a MAP estimate (site -> value): a Gaussian in the
    unconstrained space u at the mode of u's density (`warm_start.laplace`, from the estimate, which is the
    mode in the model's own space), its covariance the inverse Hessian of -log p(u) there.

    Returns (the approximation or None, facts): facts holds ``grad_norm`` and ``newton_decrement`` (the loss a
    Newton step from the estimate would still gain; the MAP's objective is the density in the model's own
    space, so these are taken there), or ``why`` when there is no approximation. ``psis=False`` (an MLE, whose
    objective is no density of the parameters) gives the facts alone."""
    potential = Potential(model, data, structure, num_chains=num_draws, compile=False)
    if potential.dim > LAPLACE_MAX_DIM:
        return None, {"why": f"{potential.dim} unconstrained dimensions (a dense Hessian is limited to {LAPLACE_MAX_DIM})"}
    values = {s.name: torch.as_tensor(np.asarray(estimate[s.name]), dtype=potential.dtype)[None] for s in potential.sites}
    u0, _ = _flat(potential, values, 1)
    u0 = u0[0]

    def objective(u):  # -log p(x, z(u)): the MAP's objective, read in unconstrained coordinates
        values = potential.constrain(u)
        log_jac = sum(s.transform.log_abs_det_jacobian(u[s.offset:s.offset + s.size].reshape(s.unconstrained),
                                                       values[s.name]).sum() for s in potential.sites)
        return -(potential.one_chain_log_density(u) - log_jac)

    def energy(u):  # -log p(x, z(u)) - log|J|: the density of u, which the Gaussian approximates
        return -potential.one_chain_log_density(u)

    facts: dict = {}
    try:
        grad = _grad(objective, u0)
        hess_objective = _hessian(objective, u0)
    except Exception as exc:  # noqa: BLE001 (a program autograd cannot differentiate twice: said, not fatal)
        return None, {"why": f"its curvature could not be computed ({one_line(exc, limit=80)})"}
    facts["grad_norm"] = float(grad.norm())
    try:
        step = torch.linalg.solve(hess_objective, grad)
        facts["newton_decrement"] = max(float(0.5 * grad @ step), 0.0)
    except RuntimeError:
        pass
    if not psis:
        return None, facts
    # the Gaussian is centred at the mode of the density of u, which the Jacobian moves away from the
    # estimate (the mode in the model's own space): warm_start's Laplace approximation, found from the estimate
    gaussian, how = laplace(_value_and_grad(potential, energy, u0), u0, max_dim=LAPLACE_MAX_DIM)
    if gaussian is None:
        return None, {**facts, "why": how}
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(num_draws, potential.dim, generator=generator, dtype=potential.dtype)
    q = torch.distributions.MultivariateNormal(gaussian.mode, covariance_matrix=gaussian.covariance)
    u = q.loc + eps @ q.scale_tril.T
    log_q = q.log_prob(u)
    log_p = log_density(potential, u)
    smoothed, k = _pareto((log_p - log_q).numpy())
    with torch.no_grad():
        draws = {k_: v.cpu().numpy() for k_, v in potential.constrain(u).items()}
    return Approximation("the Laplace approximation at the MAP estimate", k, num_draws, smoothed, draws), facts
