"""A Pyro model's potential energy as a function of one flat unconstrained vector per chain, for all chains at once.

HMC needs U(z) = -log p(data, x(z)) - log |det dx/dz| and its gradient, where z is the model's continuous
latent sites mapped to unconstrained space with Pyro's own bijections (``biject_to(site.support)``). Here
``z`` is a ``(chains, dim)`` matrix and the model runs once for every chain under an outer ``_chains``
plate placed left of all its own plates, the same broadcasting convention the suite's predictive code
uses; one autograd pass of ``U.sum()`` gives every chain's gradient, because the chains do not interact.

Most of the time of a small model's gradient is Python and dispatch overhead (Pyro's handlers, the
distributions' bookkeeping), not arithmetic. So the value-and-gradient function is traced once into a
graph of plain tensor operations (``make_fx`` through the autograd pass) and that graph is compiled with
``torch.jit.trace``: the model's Python runs once, every later call runs only the recorded operations.
Both steps are checked against the eager evaluation before use, and skipped if they disagree (for
instance a model whose control flow depends on the latent values).

Discrete sites marked for parallel enumeration are enumerated left of the chain plate and summed out by
Pyro's tensor variable elimination, contracted down to the chain plate (`_marginal_per_chain`), so U is
the marginal of the continuous sites, chain by chain, as Pyro's own NUTS computes it for one chain.

A model that does not broadcast over the outer plate (it reshapes a global site, uses ``X @ coef``)
is detected at construction by comparing the batched potential with one unbatched trace per chain;
`BatchedPotential` then raises `NotBatchable` and the caller falls back to Pyro's own kernels.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.util import TraceEinsumEvaluator
from pyro.ops.contract import contract_to_tensor
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import biject_to

from .structure import ModelStructure, enumerable

CHAIN_PLATE = "_chains"


class NotBatchable(RuntimeError):
    """The model cannot be evaluated for all chains at once (the reason is the message)."""


def is_numerical_failure(exc: BaseException) -> bool:
    """A linear-algebra failure at an extreme point (a Cholesky factor of a matrix that is not positive
    definite, a singular solve): the point has zero density, as in Pyro's own ``potential_grad``."""
    if isinstance(exc, torch.linalg.LinAlgError):
        return True
    message = str(exc)  # (raised inside TorchScript, a failure arrives as a `torch.jit.Error` quoting it)
    return isinstance(exc, (RuntimeError, torch.jit.Error)) and any(
        key in message for key in ("singular U", "not positive-definite", "positive definite", "cholesky"))


def _marginal_per_chain(trace, C: int) -> torch.Tensor:
    """log p(data, continuous sites) per chain, the enumerated discrete sites summed out: the trace's log
    factors contracted by Pyro's tensor variable elimination (`contract_to_tensor`, as its NUTS does with
    `TraceEinsumEvaluator`) down to the chain plate instead of to a scalar, so each chain keeps its own."""
    trace.pack_tensors()
    chain = trace.plate_to_symbol[CHAIN_PLATE]
    factors: OrderedDict = OrderedDict()
    for site in trace.nodes.values():
        if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
            continue
        ordinal = frozenset(trace.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized)
        factors.setdefault(ordinal, []).append(site["packed"]["log_prob"])
    enum_dims = set(trace.symbol_to_dim) - set(trace.plate_to_symbol.values())
    # (packing drops dimensions of size 1: with one chain, the chain plate is gone and so is its symbol)
    target = frozenset({chain}) if any(chain in f._pyro_dims for fs in factors.values() for f in fs) else frozenset()
    result = contract_to_tensor(factors, enum_dims, target_ordinal=target)
    if result.shape == () and C == 1:
        return result.reshape(1)
    if getattr(result, "_pyro_dims", None) != chain or result.shape != (C,):
        raise NotBatchable("the enumerated log density does not reduce to one value per chain")
    return result


@dataclass
class LatentSite:
    """Where one continuous latent site lives in the flat unconstrained vector."""

    name: str
    shape: tuple          # the constrained value's shape in a single (unbatched) trace
    unconstrained: tuple  # its shape in unconstrained space (differs for simplex, Cholesky factors ...)
    batch_ndim: int       # batch dimensions of the value (plates), left of its event dimensions
    transform: torch.distributions.Transform
    offset: int
    size: int


class BatchedPotential:
    """U(z) and dU/dz for ``z`` of shape ``(num_chains, dim)``.

    Args:
        model: the Pyro callable; ``data`` its keyword arguments; ``structure`` from `inspect_model`.
        num_chains: the batch size every call uses (the compiled graph is specialised to it).
        compile: trace and compile the value-and-gradient function (checked against eager first).
    """

    def __init__(self, model: Callable, data: dict, structure: ModelStructure, num_chains: int,
                 compile: bool = True):
        self.enumerated = list(structure.enumerated)
        self.model = enumerable(model) if self.enumerated else model
        self.data = data
        self.num_chains = num_chains
        self.nesting = structure.max_plate_nesting
        self.condition = dict(structure.full_plates)
        self.dtype = torch.get_default_dtype()
        self.sites: list[LatentSite] = []
        offset = 0
        continuous = set(structure.continuous)
        for name, site in structure.trace.nodes.items():
            if name not in continuous:
                continue
            value = site["value"].detach()
            transform = biject_to(site["fn"].support)
            unconstrained = tuple(transform.inv(value).shape)
            size = math.prod(unconstrained)
            self.sites.append(LatentSite(name, tuple(value.shape), unconstrained,
                                         value.dim() - site["fn"].event_dim, transform, offset, size))
            offset += size
        self.dim = offset
        if any(s.batch_ndim > self.nesting for s in self.sites):
            raise NotBatchable("a latent site has more batch dimensions than the model's plates")
        self.compiled = False
        self._fast: Callable | None = None
        self._compile_requested = compile

    # ---- the model at flat points ------------------------------------------------------------------
    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained ``(..., dim)`` -> site values ``(..., *site_shape)`` in the model's space."""
        lead = z.shape[:-1]
        out = {}
        for s in self.sites:
            u = z[..., s.offset:s.offset + s.size].reshape(lead + s.unconstrained)
            out[s.name] = s.transform(u)
        return out

    def _log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(data, x(z)) + log|J| per chain, for z ``(C, dim)``, the model under the chain plate."""
        C = z.shape[0]
        values, log_jac = {}, z.new_zeros(C)
        for s in self.sites:
            u = z[:, s.offset:s.offset + s.size].reshape((C,) + (1,) * (self.nesting - s.batch_ndim)
                                                         + s.unconstrained)
            x = s.transform(u)
            values[s.name] = x
            log_jac = log_jac + s.transform.log_abs_det_jacobian(u, x).reshape(C, -1).sum(-1)
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = poutine.condition(self.model, {**self.condition, **values})
            if self.enumerated:  # discrete sites enumerated left of the chain plate, then summed out
                model = poutine.enum(model, first_available_dim=-(self.nesting + 2))
            with pyro.plate(CHAIN_PLATE, C, dim=-(self.nesting + 1)):
                trace = poutine.trace(model).get_trace(**self.data)
            trace.compute_log_prob()
        if self.enumerated:
            return log_jac + _marginal_per_chain(trace, C)
        total = log_jac
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site:
                continue
            lp = site["log_prob"]
            if not isinstance(lp, torch.Tensor) or lp.dim() == 0:
                total = total + lp
                continue
            if lp.dim() < self.nesting + 1:
                total = total + lp.sum()
                continue
            lp = lp.reshape(lp.shape[:lp.dim() - self.nesting] + (-1,)).sum(-1)
            if lp.dim() != 1:
                raise NotBatchable(f"site {name!r} has log-density dimensions left of the chain plate")
            total = total + lp
        return total

    def _eager(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            U = -self._log_density(z)
            (grad,) = torch.autograd.grad(U.sum(), z)
        return U.detach(), grad.detach()

    def unbatched_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p + log|J| for each row of z, one plain (unbatched) trace per row: the reference."""
        out = []
        for row in z:
            values, log_jac = {}, 0.0
            for s in self.sites:
                u = row[s.offset:s.offset + s.size].reshape(s.unconstrained)
                x = s.transform(u)
                values[s.name] = x
                log_jac = log_jac + s.transform.log_abs_det_jacobian(u, x).sum()
            with pyro.validation_enabled(False), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = poutine.condition(self.model, {**self.condition, **values})
                if self.enumerated:
                    model = poutine.enum(model, first_available_dim=-(self.nesting + 1))
                trace = poutine.trace(model).get_trace(**self.data)
                if self.enumerated:  # Pyro's own marginalisation, as its NUTS computes it
                    out.append(TraceEinsumEvaluator(trace, True, self.nesting).log_prob(trace) + log_jac)
                    continue
            out.append(trace.log_prob_sum() + log_jac)
        return torch.stack(out)

    # ---- checks and compilation --------------------------------------------------------------------
    def check_batching(self, z: torch.Tensor) -> None:
        """Raise `NotBatchable` unless the batched density matches one unbatched trace per chain at z."""
        try:
            batched = self._log_density(z.detach())
        except NotBatchable:
            raise
        except Exception as exc:  # the model failed under the outer plate: it does not broadcast
            raise NotBatchable(f"the model fails under an outer chain plate ({type(exc).__name__}: {exc})") from exc
        if batched.shape != (z.shape[0],):
            raise NotBatchable(f"the log density has shape {tuple(batched.shape)} under the chain plate")
        reference = self.unbatched_log_density(z.detach())
        ok = torch.isfinite(reference)
        scale = reference[ok].abs().clamp(min=1.0)
        tol = 1e-4 if self.dtype == torch.float32 else 1e-9
        if not ok.any() or not torch.all((batched[ok] - reference[ok]).abs() <= tol * scale + tol):
            raise NotBatchable("the model does not broadcast over an outer chain plate (batched and "
                               "per-chain log densities differ)")

    def compile(self, points: list[torch.Tensor]) -> bool:
        """Trace the value-and-gradient into a graph and compile it; keep it only if it matches eager at
        every point in `points` (each ``(C, dim)``). Returns whether the compiled path is in use."""
        if not self._compile_requested or self.compiled:
            return self.compiled
        try:
            from .graph_passes import checks_as_output, has_checks, record, simplify

            def joint(z):
                with torch.enable_grad():
                    z = z.detach().requires_grad_(True)
                    U = -self._log_density(z)
                    (grad,) = torch.autograd.grad(U.sum(), z)
                return U, grad

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # a Cholesky factor's error check, which tracing would drop, becomes a third output (a flag):
                # where it is set, `value_and_grad` evaluates eagerly, where the check raises
                graph = checks_as_output(simplify(record(joint, points[0].detach())))
                if has_checks(graph):  # checks of another kind: stay eager
                    return False
                fast = torch.jit.trace(graph, (points[0].detach(),), check_trace=False)
            for z in points:
                U0, g0 = self._eager(z)
                U1, g1, failed = fast(z)
                if bool(failed):
                    return False
                ok = torch.isfinite(U0)
                if not torch.equal(ok, torch.isfinite(U1)):
                    return False
                tol = 1e-4 if self.dtype == torch.float32 else 1e-9
                if not torch.allclose(U1[ok], U0[ok], rtol=tol, atol=tol):
                    return False
                if not torch.allclose(g1[ok], g0[ok], rtol=1e-3 if tol > 1e-6 else 1e-7,
                                      atol=1e-3 * float(g0[ok].abs().max().clamp(min=1.0)) if ok.any() else 0):
                    return False
        except Exception:  # untraceable op or data-dependent control flow: stay eager
            return False
        self._fast = fast
        self.compiled = True
        return True

    # ---- the interface the sampler uses ------------------------------------------------------------
    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, dU/dz), shapes ``(C,)`` and ``(C, dim)``; non-finite U marks an invalid point.

        One chain at a point where the model's linear algebra fails would stop the whole batch; then the
        chains are evaluated one by one and the failing ones get U = inf (a divergence), the rest their
        values, so each chain behaves as it would alone."""
        try:
            if self._fast is not None:
                U, g, failed = self._fast(z)
                if not bool(failed):
                    return U.detach(), g.detach()
            return self._eager(z)  # (where the compiled graph's linear-algebra check failed: this raises)
        except Exception as exc:
            if not is_numerical_failure(exc):
                raise
            return self.per_chain(z)

    def per_chain(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`value_and_grad` one chain at a time, U = inf and a zero gradient where a chain's evaluation
        fails numerically (the slow path, taken only after the batched evaluation failed)."""
        U = z.new_full(z.shape[:1], math.inf)
        grad = torch.zeros_like(z)
        for c in range(z.shape[0]):
            try:
                U_c, g_c = self._eager(z[c:c + 1])
            except Exception as exc:
                if not is_numerical_failure(exc):
                    raise
                continue
            U[c], grad[c] = U_c[0], g_c[0]
        return U, grad
