"""A starting metric for NUTS warm-up: the posterior's curvature at its mode (a Laplace approximation).

Why the suite does this (Stan, NumPyro and Pyro do not): warm-up starts from the identity metric, and
on a posterior whose scales differ by orders of magnitude (a regression on unscaled covariates, where
the intercept's sd is a hundred times the slope's and the two are correlated at -0.99) the first
window's trees hit the maximum depth, 1,023 leapfrog steps per transition. A sampler that runs one
chain at a time pays that once per chain at its cheapest per-step cost; the batched sampler advances
all chains in lock-step, so each transition costs the deepest chain's tree, and on such posteriors the
first hundred warm-up iterations were three quarters of the whole run (kidiq: 48,830 of 62,000 leaf
steps). Starting from the inverse Hessian at the mode removes that transient.

Only the metric comes from the mode: the chains still start from Pyro's dispersed random points, so
R-hat keeps its power to detect chains that disagree. Stan's windowed adaptation then re-estimates the
metric from the chains' own draws, as it would from the identity; the sampling phase is plain NUTS
with a fixed metric and step size, so the draws' distribution is unchanged. Where there is no usable
mode (the optimiser runs off towards a boundary, the curvature is not positive definite, too many
dimensions for a dense Hessian) the identity is used, as in Stan, and the note says so. The Laplace
variances also scale the regularisation of the windowed metric estimates (`fast.adaptation.WindowedCovariance`).

    >>> import torch
    >>> from inference.warm_start import curvature_metric
    >>> def potential(z):  # U(z) for a Gaussian with sds 10 and 0.1, gradient included
    ...     U = 0.5 * ((z / torch.tensor([10.0, 0.1])) ** 2).sum(-1)
    ...     return U, z / torch.tensor([100.0, 0.01])
    >>> inverse_mass, note = curvature_metric(potential, torch.ones(2, 2), dense=False)
    >>> [round(v, 2) for v in inverse_mass[0].tolist()]
    [100.0, 0.01]
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

ValueAndGrad = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]

MAX_DIM = 200          # a dense Hessian by finite differences costs 2 D gradient evaluations in one batch
MAX_ITER = 500
VARIANCE_RANGE = (1e-10, 1e10)


def find_mode(value_and_grad: ValueAndGrad, start: torch.Tensor, max_iter: int = MAX_ITER
              ) -> tuple[np.ndarray | None, str]:
    """The minimum of U from `start` ``(D,)`` by L-BFGS (scipy); ``(None, why)`` when there is none to find."""
    from scipy import optimize

    dtype = start.dtype

    def energy(z: np.ndarray) -> tuple[float, np.ndarray]:
        U, grad = value_and_grad(torch.as_tensor(z, dtype=dtype).unsqueeze(0))
        U, grad = float(U[0]), grad[0].double().numpy()
        if not np.isfinite(U) or not np.isfinite(grad).all():
            return np.inf, np.zeros_like(z)
        return U, grad

    tol = 1e-5 if dtype == torch.float32 else 1e-8
    result = optimize.minimize(energy, start.double().numpy(), jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iter, "gtol": tol})
    if not np.isfinite(result.fun) or not np.isfinite(result.x).all():
        return None, "no finite mode found"
    if np.abs(result.x).max() > 1e3:
        return None, "the optimiser ran off towards a boundary of the support"
    return result.x, "mode found" if result.success else f"mode search stopped after {result.nit} iterations"


def hessian(value_and_grad: ValueAndGrad, z: np.ndarray, dtype: torch.dtype) -> np.ndarray | None:
    """Central differences of the gradient at `z`, all 2 D points in one batched evaluation."""
    D = z.shape[0]
    h = (1e-3 if dtype == torch.float32 else 1e-5) * np.maximum(1.0, np.abs(z))
    steps = np.diag(h)
    points = torch.as_tensor(np.concatenate([z + steps, z - steps]), dtype=dtype)
    U, grad = value_and_grad(points)
    if not torch.isfinite(U).all() or not torch.isfinite(grad).all():
        return None
    grad = grad.double().numpy()
    H = (grad[:D] - grad[D:]) / (2 * h[:, None])
    return 0.5 * (H + H.T)


@dataclass
class Laplace:
    """The mode of the posterior in unconstrained space and the inverse Hessian of U there."""

    mode: torch.Tensor        # (D,)
    covariance: torch.Tensor  # (D, D)
    how: str

    def max_abs_correlation(self) -> float:
        """The largest |correlation| between two coordinates under the approximation (0 in one dimension)."""
        cov = self.covariance.double()
        sd = torch.diagonal(cov).sqrt()
        corr = cov / (sd.unsqueeze(0) * sd.unsqueeze(1))
        off = corr - torch.diag_embed(torch.diagonal(corr))
        return float(off.abs().max()) if off.numel() > 1 else 0.0

    def correlation_condition(self) -> float:
        """The condition number of the approximation's correlation matrix (1 in one dimension or without
        correlation): for a Gaussian, the conditioning a diagonal metric leaves NUTS with."""
        cov = self.covariance.double()
        sd = torch.diagonal(cov).sqrt()
        eigenvalues = torch.linalg.eigvalsh(cov / (sd.unsqueeze(0) * sd.unsqueeze(1)))
        return float(eigenvalues[-1] / eigenvalues[0]) if float(eigenvalues[0]) > 0 else math.inf

    def inverse_mass(self, num_chains: int, dense: bool) -> torch.Tensor:
        """``(C, D, D)`` when `dense`, else the diagonal (the marginal variances), ``(C, D)``."""
        m = self.covariance if dense else torch.diagonal(self.covariance).clone()
        return m.expand((num_chains,) + m.shape).clone()


def laplace(value_and_grad: ValueAndGrad, start: torch.Tensor, max_dim: int = MAX_DIM) -> tuple[Laplace | None, str]:
    """The Laplace approximation from the mode found from `start` ``(D,)``; ``(None, why)`` when there
    is no usable mode (or more than `max_dim` dimensions)."""
    D = start.shape[0]
    if D > max_dim:
        return None, f"{D} dimensions (a finite-difference Hessian would take {2 * D} gradients)"
    try:
        mode, how = find_mode(value_and_grad, start)
        if mode is None:
            return None, how
        H = hessian(value_and_grad, mode, start.dtype)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:  # a numerical failure near the mode
        return None, f"the curvature could not be evaluated ({type(exc).__name__})"
    if H is None:
        return None, "the curvature is not finite at the mode"
    eigenvalues, vectors = np.linalg.eigh(H)
    if eigenvalues.min() <= 0:
        return None, "the curvature at the mode is not positive definite"
    variances = np.clip(1.0 / eigenvalues, *VARIANCE_RANGE)
    cov = (vectors * variances) @ vectors.T
    cov = 0.5 * (cov + cov.T)
    dtype = start.dtype
    return Laplace(torch.as_tensor(mode, dtype=dtype), torch.as_tensor(cov, dtype=dtype), how), how


def init_to_hint(site: dict | None = None, fallback: Callable | None = None):
    """Pyro init strategy: start a site at the value its model suggests, ``infer={"init": value}`` or a
    zero-argument callable returning it (computed only when asked), else at `fallback`'s value.

    Why: an optimiser cannot cross the boundary of a constrained support. A mixture's ordered locations
    started at Pyro's default (every component near the same point) must pass each other to reach the
    clusters, which the ordering forbids; the optimiser then runs into the boundary, where two components
    share a first coordinate and the value leaves the support. The model knows a good start (cluster
    centres of its data, sorted) and offers it; every other site keeps the guide's own default.
    """
    if site is None:
        return functools.partial(init_to_hint, fallback=fallback)
    hint = site.get("infer", {}).get("init")
    if hint is not None:
        value = hint() if callable(hint) else hint
        value = torch.as_tensor(value, dtype=site["value"].dtype if isinstance(site.get("value"), torch.Tensor)
                                else torch.get_default_dtype())
        support = getattr(site["fn"], "support", None)
        shape = tuple(site["fn"].shape()) if hasattr(site["fn"], "shape") else tuple(value.shape)
        if tuple(value.shape) == shape and (support is None or bool(support.check(value).all())):
            value._pyro_custom_init = False
            return value
    if fallback is None:
        from pyro.infer.autoguide.initialization import init_to_median

        fallback = init_to_median
    return fallback(site)


def hinted_init(guide_class: type) -> Callable:
    """`init_to_hint` falling back on `guide_class`'s own default strategy (AutoNormal's init_to_feasible,
    AutoDelta's init_to_median ...), so sites without a hint start where they always did."""
    default = inspect.signature(guide_class.__init__).parameters.get("init_loc_fn")
    fallback = default.default if default is not None and default.default is not inspect.Parameter.empty else None
    return init_to_hint(fallback=fallback)


def curvature_metric(value_and_grad: ValueAndGrad, z0: torch.Tensor, dense: bool
                     ) -> tuple[torch.Tensor | None, str]:
    """Initial inverse mass matrices for the chains of `z0` ``(C, D)`` from the Laplace approximation at
    the mode found from the first chain's starting point; ``(None, why)`` when there is none."""
    approx, how = laplace(value_and_grad, z0[0])  # a point known to have a finite density
    if approx is None:
        return None, how
    return approx.inverse_mass(z0.shape[0], dense), how
