"""Queries on a `BayesNet`, all answered by running its Pyro program under Pyro's effect handlers.

- Exact marginals and P(evidence): the program is traced with every unobserved node enumerated in
  parallel (``poutine.enum``); each site's log-probability, packed to the dimensions of its family, is
  one factor of the joint. The factors are contracted with Pyro's einsum wrapper (``pyro.ops.einsum``,
  which plans the elimination order with opt_einsum: variable elimination). One contraction gives the
  normaliser Z = P(evidence); every posterior marginal at once is its gradient with respect to a
  vector of ones attached to each query variable (dZ/d1_x = P(X = x, evidence)). The contraction runs
  in probability space in double precision; if Z underflows it is redone in log space
  (``pyro.ops.einsum.torch_log``).
- The most probable explanation: ``infer_discrete(temperature=0)`` (max-product, then backtracking).
- Likelihood weighting: the program runs under a vectorised plate of particles, non-evidence nodes drawn
  from their CPTs and each particle weighted by the probability of the evidence given its parents (the
  log-probability of the observed sites). Ancestral sampling draws every node and keeps the particles
  that agree with the evidence (weights 0 or 1). Both report the effective sample size
  ESS = (sum w)^2 / sum w^2 and each probability's standard error, the delta-method variance of the
  self-normalised estimator: sum w_i^2 (1[x_i = x] - p)^2 / (sum w_i)^2.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate, infer_discrete
from pyro.ops.einsum import contract_expression

from ..data import DataError

if TYPE_CHECKING:
    from .network import BayesNet

METHODS = ("exact", "importance", "ancestral")
MAX_ENUMERATED = 64  # each enumerated node takes one tensor dimension, and torch allows 64


def check_enumerable(net: "BayesNet", evidence: Mapping[str, str], reserved: int = 0) -> None:
    """`DataError` when the unobserved nodes are too many to enumerate, one tensor dimension each
    (`reserved` dimensions are taken by plates, like the engines' plate of draws)."""
    hidden = len(net.order) - len(evidence)
    if hidden > MAX_ENUMERATED - reserved:
        raise DataError("evidence", f"network {net.name!r} has {hidden} unobserved nodes; exact enumeration "
                        f"handles at most {MAX_ENUMERATED - reserved} (one tensor dimension each, torch allows "
                        f"{MAX_ENUMERATED}); observe more nodes or use method='importance'")


class Marginals(dict):
    """``{variable: {state: probability}}`` plus how it was computed.

    Attributes:
        method: ``exact``, ``importance`` or ``ancestral``.
        num_samples: draws used (sampling methods), else ``None``.
        ess: effective sample size of the weighted draws (sampling methods), else ``None``.
        stderr: ``{variable: {state: Monte-Carlo standard error}}`` (sampling methods), else ``None``.
    """

    def __init__(self, values: dict, method: str, num_samples: int | None = None, ess: float | None = None,
                 stderr: dict | None = None):
        super().__init__(values)
        self.method = method
        self.num_samples = num_samples
        self.ess = ess
        self.stderr = stderr


# ---- exact: enumeration + contraction ------------------------------------------------------------------
def _enumerated_trace(net: "BayesNet", evidence: Mapping[str, str]):
    check_enumerable(net, evidence)
    model = poutine.enum(config_enumerate(net.model, default="parallel"), first_available_dim=-1)
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(evidence)
    trace.compute_log_prob()
    trace.pack_tensors()
    factors = {name: site["packed"]["log_prob"] for name, site in trace.nodes.items() if site["type"] == "sample"}
    symbols = {name: site["infer"]["_enumerate_symbol"] for name, site in trace.nodes.items()
               if site["type"] == "sample" and not site["is_observed"]}
    return factors, symbols


def _contract(factors: list[torch.Tensor], extra: list[tuple[torch.Tensor, str]], log_space: bool) -> torch.Tensor:
    """Sum the product of all factors over every dimension: Z (or log Z)."""
    dims = [f._pyro_dims for f in factors] + [d for _, d in extra]
    operands = [f if log_space else f.exp() for f in factors] + [t for t, _ in extra]
    expr = contract_expression(",".join(dims) + "->", *[tuple(op.shape) for op in operands])
    return expr(*operands, backend="pyro.ops.einsum.torch_log" if log_space else "torch")


def _ancestral_set(net: "BayesNet", nodes) -> set[str]:
    """`nodes` and all their ancestors."""
    out: set[str] = set()
    stack = list(nodes)
    while stack:
        v = stack.pop()
        if v not in out:
            out.add(v)
            stack.extend(net.parents[v])
    return out


def _exact(net: "BayesNet", variables: Sequence[str], evidence: Mapping[str, str]) -> tuple[dict, float]:
    """Posterior marginals of `variables` (not in evidence) and log P(evidence).

    Only the factors of the query and evidence nodes and their ancestors enter the contraction: every
    other node is barren (it and its descendants are unobserved and unqueried), so its factor sums to 1.
    """
    factors, symbols = _enumerated_trace(net, evidence)
    relevant = _ancestral_set(net, list(variables) + list(evidence))
    factors = [f for v, f in factors.items() if v in relevant]
    if not factors:
        return {}, 0.0
    for log_space in (False, True):
        # ones (zeros in log space) attached to each query variable: their gradients are the marginals
        handles = {v: torch.full((net.cardinality(v),), 0.0 if log_space else 1.0, dtype=factors[0].dtype,
                                 requires_grad=True) for v in variables}
        z = _contract(factors, [(h, symbols[v]) for v, h in handles.items()], log_space)
        log_z = z if log_space else z.log()
        if torch.isfinite(log_z) or log_space:
            break
    if not torch.isfinite(log_z):
        raise DataError("evidence", f"{describe_evidence(evidence)} has probability zero under network {net.name!r}")
    log_z_value = float(log_z.detach())
    if not handles:
        return {}, log_z_value
    grads = torch.autograd.grad(z, list(handles.values()))
    out = {}
    for v, g in zip(handles, grads):
        p = g.clamp(min=0)  # in log space the gradient already is the normalised marginal
        out[v] = (p / p.sum()).numpy()
    return out, log_z_value


def log_evidence(net: "BayesNet", evidence: Mapping[str, Any] | None) -> float:
    """log P(evidence) by contracting every factor of the enumerated program; ``-inf`` if impossible."""
    evidence = net.check_evidence(evidence)
    if not evidence:
        return 0.0
    try:
        return _exact(net, [], evidence)[1]
    except DataError:
        return float("-inf")


# ---- most probable explanation -------------------------------------------------------------------------
def mpe(net: "BayesNet", evidence: Mapping[str, Any] | None) -> dict[str, str]:
    """The jointly most probable states of the non-evidence nodes, by ``infer_discrete(temperature=0)``."""
    evidence = net.check_evidence(evidence)
    if evidence and not np.isfinite(log_evidence(net, evidence)):
        raise DataError("evidence", f"{describe_evidence(evidence)} has probability zero under network {net.name!r}")
    check_enumerable(net, evidence)
    model = infer_discrete(config_enumerate(net.model, default="parallel"), first_available_dim=-1, temperature=0)
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(evidence)
    return {v: net.states[v][int(trace.nodes[v]["value"])] for v in net.order if v not in evidence}


# ---- sampling ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded(seed: int | None):
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _particles(net: "BayesNet", num: int, evidence: Mapping[str, str] | None):
    """Trace of the program under a plate of `num` particles (evidence observed, or nothing observed)."""
    with torch.no_grad(), pyro.plate("particles", num, dim=-1):
        return poutine.trace(net.model).get_trace(evidence)


def forward_draws(net: "BayesNet", num_samples: int, seed: int | None = None) -> dict[str, torch.Tensor]:
    """Ancestral draws of every node (state indices), each a tensor of shape (num_samples,)."""
    with _seeded(seed):
        trace = _particles(net, num_samples, None)
    return {v: trace.nodes[v]["value"].expand(num_samples) for v in net.order}


def _weighted(net: "BayesNet", variables: Sequence[str], evidence: Mapping[str, str], method: str,
              num_samples: int, seed: int | None) -> Marginals:
    with _seeded(seed):
        if method == "importance":
            trace = _particles(net, num_samples, evidence)
            log_w = torch.zeros(num_samples, dtype=torch.float64)
            for v in evidence:
                site = trace.nodes[v]
                log_w = log_w + site["fn"].log_prob(site["value"]).expand(num_samples)
        else:  # ancestral sampling with rejection
            trace = _particles(net, num_samples, None)
            agree = torch.ones(num_samples, dtype=torch.bool)
            for v, s in evidence.items():
                agree &= trace.nodes[v]["value"] == net.index[v][s]
            log_w = torch.where(agree, 0.0, -torch.inf).to(torch.float64)
    if not torch.isfinite(log_w).any():
        what = "agrees with" if method == "ancestral" else "has positive probability of"
        raise DataError("num_samples", f"none of the {num_samples} draws {what} the evidence "
                        f"{describe_evidence(evidence)}; draw more" +
                        (" or use method='importance'" if method == "ancestral" else ""))
    w = (log_w - log_w.max()).exp()
    total = w.sum()
    ess = float(total ** 2 / (w ** 2).sum())
    values, stderr = {}, {}
    for v in variables:
        x = trace.nodes[v]["value"].expand(num_samples)
        onehot = torch.nn.functional.one_hot(x, net.cardinality(v)).to(w.dtype)  # (S, K)
        p = (w[:, None] * onehot).sum(0) / total
        var = ((w[:, None] ** 2) * (onehot - p) ** 2).sum(0) / total ** 2
        values[v] = p.numpy()
        stderr[v] = var.sqrt().numpy()
    marg = Marginals({}, method, num_samples=num_samples, ess=ess)
    marg.update(_named(net, values))
    marg.stderr = _named(net, stderr)
    return marg


# ---- the one entry point ----------------------------------------------------------------------------
def query(net: "BayesNet", variables: Sequence[str] | str | None, evidence: Mapping[str, Any] | None,
          method: str = "exact", num_samples: int = 10_000, seed: int | None = None) -> Marginals:
    """Posterior marginals; see `BayesNet.query`."""
    evidence = net.check_evidence(evidence)
    if method not in METHODS:
        raise DataError("method", f"unknown query method {method!r}; choose one of {', '.join(METHODS)}")
    if variables is None:
        variables = [v for v in net.order if v not in evidence]
    elif isinstance(variables, str):
        variables = [variables]
    variables = [net._check_variable(v, "variables") for v in variables]
    hidden = [v for v in dict.fromkeys(variables) if v not in evidence]
    if method == "exact":
        probs, _ = _exact(net, hidden, evidence)
        result = Marginals(_named(net, probs), method)
    else:
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise DataError("num_samples", f"must be a positive whole number, got {num_samples!r}")
        result = _weighted(net, hidden, evidence, method, int(num_samples), seed)
    for v in variables:  # an observed variable's marginal is a point mass on its observed state
        if v in evidence:
            result[v] = {s: float(s == evidence[v]) for s in net.states[v]}
            if result.stderr is not None:
                result.stderr[v] = {s: 0.0 for s in net.states[v]}
    ordered = Marginals({v: result[v] for v in variables}, result.method, result.num_samples, result.ess,
                        None if result.stderr is None else {v: result.stderr[v] for v in variables})
    return ordered


def _named(net: "BayesNet", arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {v: {s: float(p) for s, p in zip(net.states[v], a)} for v, a in arrays.items()}


def describe_evidence(evidence: Mapping[str, str]) -> str:
    return ", ".join(f"{v}={s}" for v, s in evidence.items()) or "(none)"
