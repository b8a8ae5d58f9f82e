"""Is a sample of PIT values uniform? The test behind `inference.sbc`'s verdicts.

Simulation-based calibration turns each replicate's rank of the true value among the posterior draws into a
PIT value ``u`` in (0, 1) (`pit_value`); ``u`` is uniform exactly when the inference is calibrated. The
test is the one ArviZ draws (1.x ``az.plot_ecdf_pit``; 0.x ``az.plot_ecdf(u, pit=True,
confidence_bands=True)``; Säilynoja, Bürkner and Vehtari 2022): the empirical CDF of the R values must stay inside a *simultaneous* band around the uniform
CDF, a band that the ECDF of R uniform values leaves anywhere with probability ``1 - prob``. The band is
ArviZ's own (`inference.arviz_compat.ecdf_band`: 0.x's "optimized" band, 1.x's simulated one), evaluated
at `NPOINTS` points.

Point estimates (MAP, MLE) have one "draw": their rank is the indicator that the estimate lies below the
truth, and the question left is whether it does so half of the time (a median-unbiased estimate). That is
a two-sided binomial test (`binomial_test`).

    >>> import numpy as np
    >>> test = ecdf_test(np.random.default_rng(0).random(100))
    >>> test.passed
    True
    >>> ecdf_test(np.r_[np.full(30, 0.02), np.full(30, 0.98), np.linspace(0.1, 0.9, 40)]).shape
    'U'
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

NPOINTS = 100  # evaluation points of the ECDF (ArviZ's plot uses 100 as well)
MIN_REPLICATES = 20  # below this no verdict is given: the band is too wide to say anything


@dataclass(frozen=True)
class Uniformity:
    """The outcome of a uniformity test on the PIT values of one parameter.

    Attributes:
        passed: the ECDF stayed inside the band (point estimates: the binomial test did not reject).
        n: the number of values tested.
        prob: the band's simultaneous coverage (``1 - alpha``).
        shape: where it left the band, as a letter: ``""`` (it did not), ``"U"`` (too many values in both
            tails: the posterior is too narrow), ``"n"`` (too few in the tails: too wide), ``"low"`` (too
            many small values: the truth falls below the draws, the posterior sits too high), ``"high"``.
        worst: the largest distance of the ECDF outside its band (0 when inside), in probability units.
        p_value: the binomial test's p-value for point estimates; for the ECDF test, the smallest pointwise
            coverage that would contain the ECDF, as ``1 - coverage`` (a pointwise, not simultaneous, p).
        kind: ``"ecdf"`` or ``"binomial"``.
    """

    passed: bool
    n: int
    prob: float
    shape: str
    worst: float
    p_value: float
    kind: str = "ecdf"

    def describe(self) -> str:
        """The verdict in words, e.g. ``fails: ranks U-shaped (posterior too narrow)``."""
        if self.kind == "binomial":
            text = f"truth below the estimate in {self.shape} (binomial p = {self.p_value:.3g})"
            return ("passes: " if self.passed else "fails: ") + text
        if self.passed:
            return f"passes: the ECDF of {self.n} ranks stays inside the {self.prob:.1%} simultaneous band"
        why = {"U": "ranks U-shaped: the truth falls in the posterior's tails too often (posterior too narrow, "
                    "overconfident)",
               "n": "ranks hump-shaped: the truth falls in the posterior's centre too often (posterior too wide)",
               "low": "too many low ranks: the truth lies below most draws (posterior biased upwards)",
               "high": "too many high ranks: the truth lies above most draws (posterior biased downwards)"}
        return (f"fails: {why.get(self.shape, 'ranks not uniform')}; the ECDF leaves the {self.prob:.1%} "
                f"simultaneous band by {self.worst:.3f}")


def pit_value(draws: np.ndarray, truth: float, rng: np.random.Generator) -> tuple[int, int, float]:
    """(rank, number of draws L, PIT value u) of `truth` among `draws`.

    The rank counts the draws below the truth, ties broken at random (a discrete site, a point estimate at
    the truth); u = (rank + V) / (L + 1) with V ~ Uniform(0, 1). Under calibration the rank is uniform on
    0..L and u exactly Uniform(0, 1) whatever L is, so replicates thinned to different numbers of draws
    pool into one test.
    """
    x = np.asarray(draws, dtype=float).ravel()
    below = int(np.sum(x < truth))
    ties = int(np.sum(x == truth))
    rank = below + (int(rng.integers(0, ties + 1)) if ties else 0)
    return rank, x.size, (rank + float(rng.random())) / (x.size + 1)


@functools.lru_cache(maxsize=64)
def ecdf_band(n: int, prob: float = 0.95, npoints: int = NPOINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, lower, upper): ArviZ's simultaneous `prob` band for the ECDF of `n` uniform values (cached:
    the band depends on n, prob and npoints alone)."""
    from .arviz_compat import ecdf_band as arviz_band

    points = np.linspace(0, 1, npoints + 2)[1:-1]
    lower, upper = arviz_band(n, points, prob)
    return points, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


def ecdf_test(u: np.ndarray, prob: float = 0.95, npoints: int = NPOINTS) -> Uniformity:
    """Test the uniformity of PIT values `u` with ArviZ's simultaneous ECDF band (see the module docstring)."""
    u = np.sort(np.asarray(u, dtype=float))
    n = u.size
    points, lower, upper = ecdf_band(n, prob, npoints)
    ecdf = np.searchsorted(u, points, side="right") / n
    above = np.maximum(ecdf - upper, 0)
    below = np.maximum(lower - ecdf, 0)
    worst = float(max(above.max(), below.max()))
    passed = worst <= 1e-12
    coverage = pointwise_coverage(n, ecdf, points)
    shape = "" if passed else _shape(points, ecdf, above, below)
    return Uniformity(passed, n, prob, shape, worst, max(0.0, 1 - coverage))


def pointwise_coverage(n: int, ecdf: np.ndarray, points: np.ndarray) -> float:
    """The smallest marginal probability of a pointwise binomial band that still holds the ECDF of `n`
    uniform values (the ECDF times n is Binomial(n, x) at each point x). Written here from its one-line
    definition (as ArviZ's private helper computes it) rather than imported from ArviZ's private names."""
    from scipy.stats import binom

    counts = (n * np.asarray(ecdf)).astype(int)
    lower_tail = float(np.min(binom.cdf(counts, n, points)))
    upper_tail = float(np.min(binom.sf(counts - 1, n, points)))
    return 1 - 2 * min(lower_tail, upper_tail)


def _shape(points: np.ndarray, ecdf: np.ndarray, above: np.ndarray, below: np.ndarray) -> str:
    """Name the departure: an ECDF above the uniform early and below it late is U-shaped, and so on."""
    diff = ecdf - points
    low_half, high_half = points < 0.5, points >= 0.5
    early = diff[low_half].max(initial=0), diff[low_half].min(initial=0)
    late = diff[high_half].max(initial=0), diff[high_half].min(initial=0)
    if early[0] > 0.5 * -early[1] and late[1] < 0.5 * -late[0] and early[0] > 0 and late[1] < 0:
        return "U"  # ECDF rises fast, then lags: mass in both tails
    if early[1] < 0 and late[0] > 0 and -early[1] > 0.5 * early[0] and late[0] > 0.5 * -late[1]:
        return "n"
    return "low" if diff.mean() > 0 else "high"


def binomial_test(ranks: np.ndarray, prob: float = 0.95) -> Uniformity:
    """Point estimates: is the truth below the estimate (rank 1 of 1) in half of the replicates?"""
    r = np.asarray(ranks, dtype=int)
    k, n = int(r.sum()), int(r.size)
    p = float(stats.binomtest(k, n, 0.5).pvalue) if n else math.nan
    return Uniformity(bool(p >= 1 - prob), n, prob, f"{k} of {n}", 0.0, p, kind="binomial")


def power(scale: float = 0.7, replicates: int = 100, draws: int = 100, prob: float = 0.95,
          trials: int = 1000, seed: int = 0) -> float:
    """The probability that `ecdf_test` rejects a sampler whose posterior sd is `scale` times the true one
    (a normal posterior; ``draws`` independent draws per replicate), estimated from `trials` simulated
    SBC runs of `replicates` replicates. Used for the power stated in docs/sbc.md.

        >>> round(power(0.7, replicates=50, trials=50), 1) >= 0.5
        True
    """
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(trials):
        u = np.empty(replicates)
        for i in range(replicates):
            truth = rng.standard_normal()  # the posterior is N(0, 1) w.l.o.g.; the truth is one of its draws
            x = scale * rng.standard_normal(draws)
            u[i] = pit_value(x, truth, rng)[2]
        rejected += not ecdf_test(u, prob).passed
    return rejected / trials
