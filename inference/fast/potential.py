"""A Pyro model's potential energy as a function of one flat unconstrained vector per chain, for all chains at once.

HMC needs U(z) = -log p(data, x(z)) - log |det dx/dz| and its gradient, where z is the model's continuous
latent sites mapped to unconstrained space with Pyro's own bijections (``biject_to(site.support)``), as
Pyro's NUTS computes it for one chain. Here ``z`` is a ``(chains, dim)`` matrix, and the chain dimension is
added in one of two ways (`Potential.batching`):

- ``"vectorised"`` (the way in for every program): the model runs at the shapes of one chain, exactly as its
  author wrote it (``X @ b``, ``a[g]``, ``PyroModule[nn.Linear]``, ``LKJCholesky``, ``.expand([1])``), its
  value and gradient, as eager autograd computes them, are recorded once into a graph of ATen operations
  (``make_fx``) and that graph is vectorised over the chains with ``torch.func.vmap``, as NumPyro does
  with ``jax.vmap`` (where a recorded backward pass cannot be vectorised, the potential alone is recorded
  and differentiated under vmap: `Potential._vectorise`), then recorded once more at the batch's shape;
- ``"chain plate"``: the model runs once for all chains under an outer ``_chains`` plate left of all its
  own plates (the suite's predictive convention). Only a model that broadcasts over it can, and then its
  graph is a little smaller; it is used where it works unless asked otherwise (see `BATCHINGS`).

Either way one autograd pass gives every chain's gradient, because the chains do not interact, and the
result is checked against one plain Pyro trace per chain before use; a program whose vectorised graph does
not reproduce it (control flow that depends on latent values, say) raises `NotBatchable` with one line
naming what failed, and the caller falls back to Pyro's kernels.

Most of the time of a small model's gradient is Python and dispatch overhead (Pyro's handlers, the
distributions' bookkeeping), not arithmetic: the recorded graph runs none of it. With ``compile`` the
batched graph is shrunk (`graph_passes.simplify`) and compiled through `compile.compile_graph`.

Discrete sites marked for parallel enumeration are summed out: per chain by Pyro's
`TraceEinsumEvaluator` (vectorised), or enumerated left of the chain plate and contracted by Pyro's tensor
variable elimination down to the chain plate (`_marginal_per_chain`), so U is the marginal of the
continuous sites, chain by chain, as Pyro's own NUTS computes it for one chain.

Distributions a program built with argument validation on (``PyroSample`` priors made at module
construction, say) are evaluated with it off (`_AsPotential`): a validation check reads a value back into
Python, which neither recording nor vectorising allows; the data are checked before any engine runs.
"""

from __future__ import annotations

import copy
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
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import Distribution, biject_to

from ppl_models.errors import one_line

from ..structure import ModelStructure, enumerable, program_line
from .compile import compile_graph
from .graph_passes import BEFORE_VMAP, checks_as_output, has_checks, record, simplify

__all__ = ["Potential", "NotBatchable", "BATCHINGS", "is_numerical_failure"]

# "auto": the chain plate where the model broadcasts over it, the vectorised graph otherwise
BATCHINGS = ("auto", "vectorised", "chain plate")

CHAIN_PLATE = "_chains"


class NotBatchable(RuntimeError):
    """The model cannot be evaluated for all chains at once (the reason, one line, is the message)."""


def _validates(d: Distribution) -> bool:
    return bool(d.__dict__.get("_validate_args")) or any(
        _validates(v) for v in vars(d).values() if isinstance(v, Distribution))


def _without_validation(d: Distribution) -> Distribution:
    """`d` (and the distributions it wraps) with argument validation off: shallow copies, `d` untouched."""
    d = copy.copy(d)
    d._validate_args = False
    for key, value in list(vars(d).items()):
        if isinstance(value, Distribution):
            setattr(d, key, _without_validation(value))
    return d


class _AsPotential(Messenger):
    """The program evaluated as a potential of its sample sites: every distribution without argument
    validation (even one built with it on), and every ``pyro.param`` a constant (its current value,
    detached: NUTS draws only sample sites, as Pyro's does, and a gradient must not flow into the param
    store)."""

    def _process_message(self, msg):
        if msg["type"] == "sample" and isinstance(msg["fn"], Distribution) and _validates(msg["fn"]):
            msg["fn"] = _without_validation(msg["fn"])

    def _postprocess_message(self, msg):
        if msg["type"] == "param" and isinstance(msg["value"], torch.Tensor):
            msg["value"] = msg["value"].detach()


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


def _why_not_recorded(exc: BaseException) -> str:
    """One line on why the one-chain potential could not be recorded: where, and which operation."""
    line = program_line(exc)
    where = f" at {line}" if line else ""
    if "_local_scalar_dense" in str(exc) or "data-dependent" in str(exc):
        return (f"the program reads a latent value into Python{where} (a branch, float() or .item() on a "
                f"sampled value), which one recorded graph cannot follow")
    return f"recording the program's potential failed{where} ({one_line(exc, limit=120)})"


class Potential:
    """U(z) and dU/dz for ``z`` of shape ``(num_chains, dim)``.

    Args:
        model: the Pyro callable; ``data`` its keyword arguments; ``structure`` from `inspect_model`.
        num_chains: the batch size every compiled call uses.
        compile: shrink and compile the batched value-and-gradient (checked against eager first).
        batching: one of `BATCHINGS`; `prepare` settles ``"auto"``.
        compiler: the implementation `compile.compile_graph` uses.

    Example::

        potential = Potential(model, data, inspect_model(model, data), num_chains=4)
        potential.prepare(z0)                  # picks and checks the batching at z0 (4, dim)
        U, grad = potential.value_and_grad(z0)
        values = potential.constrain(z0)       # {site: (4, *site_shape)}
    """

    def __init__(self, model: Callable, data: dict, structure: ModelStructure, num_chains: int,
                 compile: bool = True, batching: str = "auto", compiler: str = "auto"):
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, not {batching!r}")
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
        # the latent values' own float type: a program that computes in float64 (``examples/lkj.py`` makes
        # its data double and its priors follow) is evaluated in float64
        floats = [site["value"].dtype for name, site in structure.trace.nodes.items()
                  if name in continuous and site["value"].is_floating_point()]
        for dtype in floats:
            self.dtype = torch.promote_types(self.dtype, dtype)
        self.batching = batching
        self.compiled = False
        self.compiler = compiler
        self._compile_requested = compile
        self._fast: Callable | None = None
        self._one_chain_graph: Callable | None = None
        self._gradient = "recorded"
        self._batched_graphs: dict[int, Callable] = {}

    # ---- the model at flat points ------------------------------------------------------------------
    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained ``(..., dim)`` -> site values ``(..., *site_shape)`` in the model's space."""
        lead = z.shape[:-1]
        out = {}
        for s in self.sites:
            u = z[..., s.offset:s.offset + s.size].reshape(lead + s.unconstrained)
            out[s.name] = s.transform(u)
        return out

    def _trace(self, values: dict, first_available_dim: int):
        with pyro.validation_enabled(False), warnings.catch_warnings(), _AsPotential():
            warnings.simplefilter("ignore")
            model = poutine.condition(self.model, {**self.condition, **values})
            if self.enumerated:
                model = poutine.enum(model, first_available_dim=first_available_dim)
            return model, poutine.trace(model)

    def one_chain_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(data, x(z)) + log|J| at one flat point ``(dim,)``: one plain trace of the program as written,
        enumerated sites summed out by Pyro's `TraceEinsumEvaluator`, as Pyro's NUTS does. The reference."""
        values, log_jac = {}, z.new_zeros(())
        for s in self.sites:
            u = z[s.offset:s.offset + s.size].reshape(s.unconstrained)
            x = s.transform(u)
            values[s.name] = x
            log_jac = log_jac + s.transform.log_abs_det_jacobian(u, x).sum()
        with pyro.validation_enabled(False), warnings.catch_warnings(), _AsPotential():
            warnings.simplefilter("ignore")
            model = poutine.condition(self.model, {**self.condition, **values})
            if self.enumerated:
                model = poutine.enum(model, first_available_dim=-(self.nesting + 1))
            trace = poutine.trace(model).get_trace(**self.data)
            if self.enumerated:
                return TraceEinsumEvaluator(trace, True, self.nesting).log_prob(trace) + log_jac
            return trace.log_prob_sum() + log_jac

    def reference_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """`one_chain_log_density` of each row of z ``(n, dim)``, one trace per row: ``(n,)``."""
        return torch.stack([self.one_chain_log_density(row) for row in z])

    def _plate_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(data, x(z)) + log|J| per chain, for z ``(C, dim)``, the model under the chain plate."""
        C = z.shape[0]
        values, log_jac = {}, z.new_zeros(C)
        for s in self.sites:
            if s.batch_ndim > self.nesting:
                raise NotBatchable(f"site {s.name!r} has more batch dimensions than the model's plates")
            u = z[:, s.offset:s.offset + s.size].reshape((C,) + (1,) * (self.nesting - s.batch_ndim)
                                                         + s.unconstrained)
            x = s.transform(u)
            values[s.name] = x
            log_jac = log_jac + s.transform.log_abs_det_jacobian(u, x).reshape(C, -1).sum(-1)
        with pyro.validation_enabled(False), warnings.catch_warnings(), _AsPotential():
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

    def _one_chain_value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            U = -self.one_chain_log_density(z)
            (grad,) = torch.autograd.grad(U, z)
        return U, grad

    def _vmapped(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, dU/dz) of every chain: the one-chain graph vectorised over the rows of z (``torch.func.vmap``).
        A chain whose linear algebra fails (the graph's check flag) gets U = inf and a zero gradient, as in
        `per_chain`. The graph holds the gradient as autograd computed it when recording (`_gradient` is
        "recorded"), or only the potential, then differentiated under vmap ("vmapped", see `prepare`)."""
        if self._gradient == "recorded":
            U, grad, failed = torch.func.vmap(self._one_chain_graph)(z)
        else:
            grad, (U, failed) = torch.func.vmap(torch.func.grad_and_value(self._one_chain_graph, has_aux=True))(z)
        return (torch.where(failed, math.inf, U),
                torch.where(failed.unsqueeze(-1), torch.zeros((), dtype=grad.dtype), grad))

    def _vectorised(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`_vmapped`, recorded once per number of rows (the graph runs without vmap's dispatch)."""
        rows = z.shape[0]
        if rows not in self._batched_graphs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._batched_graphs[rows] = simplify(record(lambda z: self._vmapped(z), z.detach()))
        return self._batched_graphs[rows](z)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(data, x(z)) + log|J| per chain, for z ``(C, dim)``, by the batched path."""
        if self.batching == "vectorised":
            return -self._vectorised(z)[0]
        return self._plate_log_density(z)

    def eager(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, dU/dz) by the batched path, uncompiled: a plain tensor function ``make_fx`` can record."""
        if self.batching == "vectorised":
            return self._vectorised(z)
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            U = -self._plate_log_density(z)
            (grad,) = torch.autograd.grad(U.sum(), z)
        return U.detach(), grad.detach()

    # ---- choosing the batching, checks and compilation -----------------------------------------------
    def prepare(self, z: torch.Tensor) -> str:
        """Settle the batching at the points z ``(C, dim)`` (rows of finite density, if any): the chain
        plate where it is asked for or (with ``"auto"``) where the model broadcasts over it, else the
        vectorised graph; each checked against one plain trace per chain. Returns the batching; raises
        `NotBatchable` with one line saying why neither works."""
        z = z.detach()
        reference = self.reference_log_density(z)
        reasons = []
        if self.batching in ("auto", "chain plate"):
            try:
                self._check(self._plate_log_density(z), reference, "the chain plate")
                self.batching = "chain plate"
                return self.batching
            except NotBatchable as exc:
                reasons.append(str(exc))
            except Exception as exc:
                if is_numerical_failure(exc):
                    raise
                reasons.append(f"the model does not broadcast over an outer chain plate ({one_line(exc, limit=120)})")
            if self.batching == "chain plate":
                raise NotBatchable(reasons[0])
        point = z[int(torch.isfinite(reference).int().argmax())]
        why = ""
        for gradient in ("recorded", "vmapped"):
            try:
                self._vectorise(gradient, z, point, reference)
                return self.batching
            except NotBatchable as exc:
                why = str(exc)
            except Exception as exc:
                why = _why_not_recorded(exc)
            self._one_chain_graph, self._batched_graphs, self.batching = None, {}, "auto"
        raise NotBatchable(why)

    def _vectorise(self, gradient: str, z: torch.Tensor, point: torch.Tensor, reference: torch.Tensor) -> None:
        """Record the one-chain graph at `point` and check its vectorised value and gradient at z.

        ``"recorded"``: the value and the gradient as autograd computes them eagerly, recorded together
        (Pyro's contractions detach their shifts and guard their logarithms; the recording keeps exactly
        that). Vectorising it fails where a backward formula copies into a buffer made for one chain
        (factor analysis's low-rank Gaussian), and then ``"vmapped"``: the potential alone is recorded and
        differentiated under vmap, where backward formulas make their buffers for the batch."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if gradient == "recorded":
                def one_chain(z):  # (make_fx wants a plain function)
                    return self._one_chain_value_and_grad(z)

                graph = checks_as_output(simplify(record(one_chain, point, decompose=BEFORE_VMAP)))
            else:
                def one_chain(z):
                    return (-self.one_chain_log_density(z),)

                graph = checks_as_output(record(one_chain, point))  # (not simplified: it is differentiated)
        if has_checks(graph):
            raise NotBatchable("the recorded potential holds a check other than a linear-algebra one")
        self._one_chain_graph, self._gradient, self.batching = graph, gradient, "vectorised"
        U, _ = self._vectorised(z)
        self._check(-U, reference, "the vectorised graph")
        probe = z + 0.1 * torch.randn_like(z)
        self._check_gradient(probe)

    def _check(self, batched: torch.Tensor, reference: torch.Tensor, what: str) -> None:
        if batched.shape != reference.shape:
            raise NotBatchable(f"{what} gives a log density of shape {tuple(batched.shape)}, "
                               f"not one value per chain")
        ok = torch.isfinite(reference)
        scale = reference[ok].abs().clamp(min=1.0)
        tol = 1e-4 if self.dtype == torch.float32 else 1e-9
        if not ok.any() or not torch.equal(ok, torch.isfinite(batched)) \
                or not torch.all((batched[ok] - reference[ok]).abs() <= tol * scale + tol):
            raise NotBatchable(f"{what} does not reproduce the model's log density (control flow that "
                               f"depends on the latent values?)")

    def _check_gradient(self, z: torch.Tensor) -> None:
        """The vectorised graph's value and gradient against one eager trace per chain at z."""
        U, grad = self._vectorised(z)
        for c in range(z.shape[0]):
            try:
                U0, g0 = self._one_chain_value_and_grad(z[c])
            except Exception as exc:
                if not is_numerical_failure(exc):
                    raise
                continue
            if not bool(torch.isfinite(U0)):
                continue
            tol = 1e-4 if self.dtype == torch.float32 else 1e-9
            if not torch.allclose(U[c], U0, rtol=tol, atol=tol) or not torch.allclose(
                    grad[c], g0, rtol=1e-3 if tol > 1e-6 else 1e-7, atol=1e-3 * float(g0.abs().max().clamp(min=1.0))):
                raise NotBatchable("the vectorised graph does not reproduce the model's gradient (control flow "
                                   "that depends on the latent values?)")

    def compile(self, points: list[torch.Tensor]) -> bool:
        """Record the batched value-and-gradient into a graph and compile it; keep it only if it matches
        eager at every point in `points` (each ``(C, dim)``). Returns whether the compiled path is in use."""
        if not self._compile_requested or self.compiled:
            return self.compiled
        try:
            def joint(z):
                return self.eager(z)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # a Cholesky factor's error check, which tracing would drop, becomes a third output (a flag):
                # where it is set, `value_and_grad` evaluates eagerly, where the check raises
                graph = checks_as_output(simplify(record(joint, points[0].detach())))
                if has_checks(graph):  # checks of another kind: stay eager
                    return False
                fast = compile_graph(graph, (points[0].detach(),), self.compiler)
            for z in points:
                U0, g0 = self.eager(z)
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
            return self.eager(z)  # (where the compiled graph's linear-algebra check failed: this raises)
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
                U_c, g_c = self.eager(z[c:c + 1])
            except Exception as exc:
                if not is_numerical_failure(exc):
                    raise
                continue
            U[c], grad[c] = U_c[0], g_c[0]
        return U, grad
