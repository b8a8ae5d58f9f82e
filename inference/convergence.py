"""Why an optimiser stopped, and whether its loss was still falling when it did.

SVI, MAP and MLE all minimise a loss step by step. A run can end for three reasons: the loss went flat
(the stopping rule), the optimiser's own test fired (L-BFGS: no further change), or the step budget ran
out. Only the first two mean the estimate is where the objective's optimum is; the third is an estimate
stopped wherever it happened to be. `Convergence` records which, with the evidence:

- the trend of the loss over the last stretch of the run (its last half, at least `MIN_WINDOW` steps: a
  stochastic loss drifts down by less than its noise per hundred steps long before it is flat):
  the least-squares slope times the window, with a standard error from the residuals inflated by their
  lag-1 autocorrelation (successive Adam iterates are correlated, so the naive error is too small). The
  loss is *falling* when its change over the window is below minus twice that error and larger than the
  tolerance; the noise of a stochastic loss (one ELBO particle) thus never reads as a trend, and an exact
  loss that creeps down by rounding never reads as progress;
- whether the parameters themselves stopped moving: Adam's iterates over the same stretch, cut in four
  pieces, compared as the chains of an MCMC run are (split R-hat, per parameter; Dhaka et al. 2020,
  "Robust, accurate stochastic optimization for variational inference"). A parameter that drifts slowly
  while the loss is already flat within its noise (eight schools' mu under a mean-field guide creeps
  from 1 to 4 over two thousand steps at lr 0.1, while the loss changes by less than its noise per two
  hundred) shows here; the loss alone stopped those runs at mu 1.6;
- for a stochastic loss, the gain a step along the gradient still makes at the end (`optim.objective_gap`:
  many particles, common random numbers), in nats: the distance to the optimum in the objective's own unit;
- for a point estimate, the gradient norm at the end and, where the curvature is known (the Laplace
  approximation at a MAP), the Newton decrement: the loss the next Newton step would still gain, in nats.

Why not Pyro's or ArviZ's: neither records why an optimisation stopped nor tests its loss trace.

    >>> import numpy as np
    >>> falling = loss_trend(list(1000.0 - np.arange(400.0)))
    >>> round(falling.change), falling.falling(tol=1e-4)
    (-200, True)
    >>> noise = loss_trend(list(np.random.default_rng(0).normal(50.0, 5.0, 400)))
    >>> noise.falling(tol=1e-4)
    False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_WINDOW = 200
GAP_LIMIT = 0.05  # nats: a stochastic run whose loss still falls by more along its gradient is not at its optimum
NEWTON_LIMIT = 0.01  # nats: a point estimate the next Newton step would improve by more is not at the optimum

STOPPED_BY = {
    "flat": "the loss went flat (no trend over its last {window} steps)",
    "optimiser": "the optimiser's own test (no further change in the loss)",
    "budget": "its step budget ({steps} steps)",
}


@dataclass(frozen=True)
class Trend:
    """The change of the loss over the last `window` steps (negative: falling) and its standard error."""

    window: int
    change: float
    se: float
    level: float  # the mean loss over the window

    def falling(self, tol: float) -> bool:
        """Whether the loss is still going down: by more than twice its noise and more than `tol` of
        its level (at least `tol` nats)."""
        return self.change < -max(2.0 * self.se, tol * max(abs(self.level), 1.0))


def window_for(steps: int) -> int:
    """The stretch of a run of `steps` steps whose trend is tested: its last half, at least
    `MIN_WINDOW` steps (all of a shorter run)."""
    return min(steps, max(MIN_WINDOW, steps // 2))


def loss_trend(history: Sequence[float], window: int | None = None) -> Trend:
    """The least-squares trend of the last `window` losses (default `window_for(len(history))`)."""
    losses = np.asarray(history, dtype=float)
    window = min(len(losses), window or window_for(len(losses)))
    y = losses[-window:]
    if window < 3:
        return Trend(window, 0.0 if window < 2 else float(y[-1] - y[0]), math.inf, float(np.mean(y)))
    t = np.arange(window, dtype=float)
    t -= t.mean()
    slope = float(np.dot(t, y - y.mean()) / np.dot(t, t))
    residual = y - y.mean() - slope * t
    s2 = float(np.dot(residual, residual)) / (window - 2)
    r1 = 0.0
    if s2 > 0:
        r1 = float(np.dot(residual[1:], residual[:-1]) / np.dot(residual, residual))
        r1 = min(max(r1, 0.0), 0.95)
    se = math.sqrt(s2 / float(np.dot(t, t)) * (1 + r1) / (1 - r1)) * window
    return Trend(window, slope * window, se, float(y.mean()))


ITERATE_RHAT = 1.2  # the split R-hat of every kept parameter's iterates must be below this
ITERATE_COORDS = 256  # parameters whose iterates are kept (evenly spaced over all of them)


def split_rhat(iterates: np.ndarray, pieces: int = 4) -> np.ndarray:
    """Split R-hat of each column of `iterates` (steps, parameters), its rows cut into `pieces` pieces."""
    n = len(iterates) // pieces * pieces
    x = np.asarray(iterates[len(iterates) - n:], dtype=float).reshape(pieces, n // pieces, -1)
    length = n // pieces
    within = x.var(axis=1, ddof=1).mean(axis=0)
    between = length * x.mean(axis=1).var(axis=0, ddof=1)
    pooled = (length - 1) / length * within + between / length
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(pooled / within)
    return np.where(within > 0, rhat, np.where(between > 0, np.inf, 1.0))


class Iterates:
    """A few variational parameters' values at every step (up to `ITERATE_COORDS`, evenly spaced over the
    flattened parameters, each with its parameter's name), to tell whether the optimiser still moves them."""

    def __init__(self):
        self.rows: list[np.ndarray] = []
        self.index: np.ndarray | None = None
        self.names: list[str] = []
        self.size = 0

    def add(self, named: list[tuple[str, np.ndarray]]) -> None:
        flat = np.concatenate([v.reshape(-1) for _, v in named]) if named else np.zeros(0)
        if not len(flat):
            return
        if len(flat) != self.size:  # the first step (an autoguide makes its parameters then): choose the columns
            self.size = len(flat)
            self.index = np.unique(np.linspace(0, len(flat) - 1, min(len(flat), ITERATE_COORDS)).astype(int))
            names = [name for name, v in named for _ in range(v.size)]
            self.names = [names[i] for i in self.index]
            self.rows = []
        self.rows.append(flat[self.index])

    def drifting(self) -> list[tuple[str, float]]:
        """The parameters whose iterates over the last half of the steps kept are not stationary:
        (name, split R-hat), worst first; the empty list when all are (or nothing is kept)."""
        rows = self.rows
        if not self.names or len(rows) < 8:
            return []
        rhat = split_rhat(np.asarray(rows[len(rows) // 2:]))
        worst: dict[str, float] = {}
        for name, r in zip(self.names, rhat):
            if r >= ITERATE_RHAT:
                worst[name] = max(worst.get(name, 0.0), float(r))
        return sorted(worst.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class Convergence:
    """How an optimisation ended.

    Attributes:
        method: ``svi``, ``map`` or ``mle``.
        stopped_by: ``flat`` (the stopping rule), ``optimiser`` (L-BFGS's own test) or ``budget``.
        steps: steps taken; budget: the step budget (``num_steps``).
        final_loss: the mean loss over the tested window.
        trend: the loss's trend over the last window (see `loss_trend`).
        tol: the relative tolerance the trend was tested with.
        gap: what a step along the gradient still gains at the end, in nats (stochastic losses), or None.
        drifting: variational parameters still moving at the end (name, split R-hat of their iterates).
        grad_norm: the gradient norm at the end (point estimates with an exact objective), else None.
        newton_decrement: the loss one more Newton step would gain, in nats (MAP/MLE where the
            curvature is known), else None.
    """

    method: str
    stopped_by: str
    steps: int
    budget: int
    final_loss: float
    trend: Trend
    tol: float
    grad_norm: float | None = None
    newton_decrement: float | None = None
    drifting: tuple[tuple[str, float], ...] = ()
    gap: float | None = None

    @property
    def falling(self) -> bool:
        return self.trend.falling(self.tol)

    @property
    def converged(self) -> bool:
        """Whether the run ended at its objective's optimum as far as the evidence tells."""
        if self.newton_decrement is not None and self.newton_decrement > NEWTON_LIMIT:
            return False
        if self.gap is not None and self.gap > GAP_LIMIT:
            return False
        return not (self.stopped_by == "budget" and (self.falling or self.drifting))

    def describe(self) -> str:
        """One line: why it stopped, after how many steps, and the trend at the end."""
        why = STOPPED_BY[self.stopped_by].format(window=self.trend.window, steps=self.budget)
        text = f"{self.method} stopped after {self.steps} steps by {why}; loss {self.final_loss:.6g}"
        if self.trend.window >= 1:
            steps = "step" if self.trend.window == 1 else f"{self.trend.window} steps"
            text += f", change over its last {steps} {self.trend.change:+.3g}"
            if math.isfinite(self.trend.se) and self.trend.se > 0:
                text += f" (+/- {self.trend.se:.2g})"
        if self.gap is not None:
            text += f"; a step along the gradient would gain {self.gap:.2g} nats"
        if self.newton_decrement is not None:
            text += f"; a further Newton step would gain {self.newton_decrement:.2g} nats"
        return text

    def problem(self) -> str | None:
        """The problem in words, with what to do, or None when the run converged."""
        if self.stopped_by == "budget" and self.falling:
            steps = "step" if self.trend.window == 1 else f"{self.trend.window} steps"
            return (f"{self.method} is not converged: it stopped at its step budget ({self.budget} steps) while "
                    f"the loss was still falling ({self.trend.change:+.3g} over the last {steps}); "
                    "its estimates are not at the optimum: raise num_steps (or lr)")
        if self.stopped_by == "budget" and self.drifting:
            moving = ", ".join(f"{name} (R-hat of its iterates {rhat:.2f})" for name, rhat in self.drifting[:3])
            return (f"{self.method} is not converged: it stopped at its step budget ({self.budget} steps) while its "
                    f"parameters were still drifting: {moving}; raise num_steps (or lr); a scale drifting towards 0 "
                    "may mean the objective has no optimum inside the parameter's support")
        if self.gap is not None and self.gap > GAP_LIMIT:
            return (f"{self.method} is not at the optimum of its objective: a step along the gradient still lowers the "
                    f"loss by {self.gap:.2g} nats (measured on fresh particles); its estimates are off: raise num_steps, "
                    "lower lr, or raise num_particles")
        if self.newton_decrement is not None and self.newton_decrement > NEWTON_LIMIT:
            return (f"{self.method} is not at the optimum of its objective: one more Newton step would improve the "
                    f"loss by {self.newton_decrement:.2g} nats (gradient norm {self.grad_norm:.2g}); raise num_steps "
                    "or try optimizer='lbfgs'")
        return None
