"""The warm-up's adaptation of every chain's step size and mass matrix, as Stan does it.

The step size is adapted by dual averaging (`DualAveraging`: target acceptance `target_accept`, gamma 0.05,
t0 10, kappa 0.75) throughout warm-up, starting from Stan's heuristic (`find_reasonable_step_size`); a
diagonal or dense inverse mass matrix is estimated in doubling windows (`adaptation_windows`: initial
buffer 75, first window 25, final buffer 50, scaled down for short warm-ups) with Stan's regularisation
(`WindowedCovariance`), the step size re-initialised after each window.

Three ways (`ADAPTATIONS`, each a `Pooling` of the step size and of the metric). ``"per chain"``: every
chain keeps its own step size and mass matrix, as if it ran alone (Stan). ``"pooled"`` (the default): one
step size and one mass matrix for all chains, the step size adapted to the chains' mean acceptance and
re-initialised at the geometric mean of their heuristic step sizes, the mass matrix the mean of the chains'
within-chain covariances (each about its own chain's mean, so chains in different places do not inflate
it). ``"pooled metric"``: that one mass matrix, and a step size per chain.

The chains advance in lock-step and a batch waits for its longest tree: with per-chain adaptation their
step sizes ended warm-up 2-7x apart on the Gaussian mixture of Pyro's tutorial, the short-step chain
setting every transition's cost. Pooled, four chains estimate one metric from four times the draws, and
one step size from four times the acceptances: less noise, and (dual averaging on a noisy acceptance
settles on a smaller step) a step size 20-30 % larger, the one that meets the target acceptance. Where the
chains see different geometry (a funnel, the horseshoe's global-local scales) one step size fails a chain
that wanders where it is too large: it diverges and sticks. ``"pooled metric"`` lets such a chain take
shorter steps. Measured in benchmarks/README.md ("pooled against per-chain warm-up", "The pooled
metric's failures" and "A step size per chain"): no warm-up is best everywhere, so the default stays the
one best on the nine models and the HMM, and `Posterior.problems` names ``"pooled metric"`` when a pooled
run diverged.

References: Hoffman & Gelman (2014), Stan `stepsize_adaptation.hpp` and `windowed_adaptation.hpp`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .state import LeafInput, LeafState, SubtreeConstants
from .tree import Integrator, Leaf, kinetic_energy, where_chains

__all__ = ["ADAPTATIONS", "Pooling", "pooling", "find_reasonable_step_size", "DualAveraging", "WindowedCovariance",
           "adaptation_windows"]


class Pooling(NamedTuple):
    """What one warm-up adapts from all chains together, for all of them."""

    step: bool    # one step size, adapted to the chains' mean acceptance
    metric: bool  # one mass matrix, the mean of the chains' within-chain covariances


_POOLINGS = {"pooled": Pooling(step=True, metric=True), "pooled metric": Pooling(step=False, metric=True),
             "per chain": Pooling(step=False, metric=False)}
ADAPTATIONS = tuple(_POOLINGS)


def pooling(adaptation: str) -> Pooling:
    """The `Pooling` of a name of `ADAPTATIONS`."""
    if adaptation not in _POOLINGS:
        raise ValueError(f"adaptation must be one of {ADAPTATIONS}, not {adaptation!r}")
    return _POOLINGS[adaptation]


def find_reasonable_step_size(integrator: Integrator, z, U, grad, step_size, generator,
                              leaf: Leaf | None = None) -> torch.Tensor:
    """Stan's heuristic, per chain: double or halve the step until one leapfrog step's acceptance
    crosses 0.8. `step_size` is ``(C, 1)``. With a compiled NUTS `leaf` the leapfrog steps run through it
    (its log weight from an empty subtree is the step's log acceptance) instead of the eager gradient."""
    threshold = math.log(0.8)
    metric = integrator.metric
    r = metric.momentum(generator, z)
    v = metric.velocity(r)
    H0 = U + kinetic_energy(r, v)
    if leaf is not None and leaf.compiled is not None:
        C, D = z.shape
        K = leaf.checkpoints
        no, none = torch.zeros(C, dtype=torch.bool), torch.zeros(C, K, D, dtype=z.dtype)
        empty = LeafState(z=z, r=r, g=grad, v=v, log_w=torch.full_like(U, -math.inf), s_z=z, s_U=U, s_g=grad,
                          r_sum=torch.zeros_like(r), diverging=no, turning=no, sum_accept=torch.zeros_like(U),
                          n_steps=torch.zeros(C, dtype=torch.long), active=torch.ones(C, dtype=torch.bool),
                          ck_r=none, ck_v=none, ck_sum=none)
        no_checkpoint = torch.zeros(K, dtype=torch.bool)
        first_leaf = LeafInput(log_u=torch.zeros_like(U), write=no_checkpoint, check=no_checkpoint)
        H0 = torch.nan_to_num(H0, nan=math.inf, posinf=math.inf, neginf=-math.inf)

        def log_accept(eps):
            return leaf(empty, SubtreeConstants(step=eps, inverse_mass=metric.inverse_mass, H0=H0), first_leaf).log_w
    else:
        def log_accept(eps):
            _, r1, U1, _ = integrator.step(z, r, grad, eps)
            delta = H0 - (U1 + kinetic_energy(r1, metric.velocity(r1)))
            return torch.where(torch.isnan(delta), torch.full_like(delta, -math.inf), delta)

    direction = torch.where(log_accept(step_size) > threshold, 1.0, -1.0).to(z.dtype)
    searching = torch.ones(z.shape[0], dtype=torch.bool)
    for _ in range(60):
        candidate = step_size * torch.pow(2.0, direction).unsqueeze(-1)
        step_size = where_chains(searching, candidate, step_size)
        new_direction = torch.where(log_accept(step_size) > threshold, 1.0, -1.0).to(z.dtype)
        searching = searching & (new_direction == direction)
        if not bool(searching.any()):
            break
    return step_size


class DualAveraging:
    """Nesterov dual averaging of log step size (Hoffman & Gelman 2014, Stan's constants), per chain, or
    with `pooled` one step size for all chains, adapted to their mean acceptance."""

    def __init__(self, step_size: torch.Tensor, target: float, gamma=0.05, t0=10.0, kappa=0.75,
                 pooled: bool = False):
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.pooled = pooled
        self.start = self.restart(step_size)

    def restart(self, step_size: torch.Tensor) -> torch.Tensor:
        """Start again from `step_size` ``(C, 1)``; returns the step size to go on with (pooled: the
        chains' geometric mean, for every chain)."""
        if self.pooled:
            step_size = torch.exp(torch.log(step_size).mean(0, keepdim=True)).expand_as(step_size).clone()
        self.mu = torch.log(10 * step_size)
        self.t = 0
        self.h_bar = torch.zeros_like(step_size)
        self.log_bar = torch.zeros_like(step_size)
        return step_size

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """Feed one transition's mean acceptance ``(C,)``; returns the next step size ``(C, 1)``."""
        self.t += 1
        eta = 1.0 / (self.t + self.t0)
        accept = torch.nan_to_num(accept_prob, nan=0.0).unsqueeze(-1)
        if self.pooled:
            accept = accept.mean(0, keepdim=True).expand_as(accept)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - accept)
        log_step = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        weight = self.t ** (-self.kappa)
        self.log_bar = weight * log_step + (1 - weight) * self.log_bar
        return torch.exp(log_step)

    def final(self) -> torch.Tensor:
        return torch.exp(self.log_bar)


class WindowedCovariance:
    """Welford running mean and (co)variance of the draws in one adaptation window, per chain.

    `reference` ``(C, D)`` holds the variances the regularisation is scaled by: ones gives Stan's rule
    exactly; the warm start passes the Laplace approximation's variances, so that a parameter whose
    posterior sd is 0.001 is not given a metric floor of variance 1e-5, ten times its own (which forced a
    step size three times too small on the sblrc regression)."""

    def __init__(self, C: int, D: int, dense: bool, dtype, reference: torch.Tensor | None = None,
                 pooled: bool = False):
        self.dense, self.n, self.pooled = dense, 0, pooled
        self.mean = torch.zeros(C, D, dtype=torch.float64)
        self.m2 = torch.zeros((C, D, D) if dense else (C, D), dtype=torch.float64)
        self.dtype = dtype
        self.reference = (torch.ones(C, D, dtype=torch.float64) if reference is None
                          else reference.to(torch.float64))

    def add(self, z: torch.Tensor) -> None:
        z = z.to(torch.float64)
        self.n += 1
        delta = z - self.mean
        self.mean = self.mean + delta / self.n
        if self.dense:
            self.m2 = self.m2 + delta.unsqueeze(-1) * (z - self.mean).unsqueeze(-2)
        else:
            self.m2 = self.m2 + delta * (z - self.mean)

    def inverse_mass(self) -> torch.Tensor:
        """Stan's regularised estimate, (n / (n + 5)) cov + 1e-3 (5 / (n + 5)) R, with R = diag(reference)
        (the identity in Stan). Pooled: cov and R are the means over the chains (each chain's covariance
        about its own mean), the same matrix for every chain, from C times the draws."""
        n = self.n
        cov = self.m2 / max(n - 1, 1)
        reference = self.reference
        if self.pooled:
            cov = cov.mean(0, keepdim=True).expand_as(cov)
            reference = reference.mean(0, keepdim=True).expand_as(reference)
            n = n * cov.shape[0]
        shrink = 1e-3 * 5.0 / (n + 5.0) * reference
        if self.dense:
            cov = n / (n + 5.0) * cov + torch.diag_embed(shrink)
            cov = 0.5 * (cov + cov.transpose(-1, -2))
        else:
            cov = n / (n + 5.0) * cov + shrink
        return cov.to(self.dtype)


def adaptation_windows(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50,
                       base_window: int = 25) -> list[tuple[int, int]]:
    """Stan's mass-matrix windows as (start, end) warm-up iteration ranges; none below 20 iterations."""
    if num_warmup < 20:
        return []
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
    windows, start, size, last = [], init_buffer, base_window, num_warmup - term_buffer
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        windows.append((start, end))
        start, size = end, 2 * size
    return windows
