"""The coin: N flips of one coin with unknown bias p, under a Beta prior.

Generative story (the course's IID Bernoulli picture: one p shared by every flip):

    p ~ Beta(alpha, beta)
    for i = 1..N:
        flips_i ~ Bernoulli(p)

Conjugacy gives the exact posterior Beta(alpha + heads, beta + tails), exposed as `exact_posterior`
for tests and the demo's oracle check.

Example:
    >>> import torch, pyro
    >>> from ppl_models.coin import coin, exact_posterior
    >>> trace = pyro.poutine.trace(coin).get_trace(flips=torch.tensor([1., 1., 0.]))
    >>> exact_posterior([1, 1, 0], alpha=1.0, beta=1.0).args
    (3.0, 2.0)
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from scipy import stats

from .data import Field, Option
from .registry import ModelSpec, register


def coin(flips: torch.Tensor | None = None, alpha: float = 1.0, beta: float = 1.0, N: int = 10) -> None:
    """Beta-Bernoulli coin. `flips` (N,) of 0/1; pass `None` to sample N flips from the prior."""
    num_flips = len(flips) if flips is not None else N
    p = pyro.sample("p", dist.Beta(alpha, beta))
    with pyro.plate("N", num_flips):
        pyro.sample("flips", dist.Bernoulli(p), obs=flips)


def exact_posterior(flips, alpha: float = 1.0, beta: float = 1.0):
    """The conjugate posterior of p: a frozen ``scipy.stats.beta(alpha + heads, beta + tails)``."""
    flips = np.asarray(flips, dtype=float)
    heads = float(flips.sum())
    return stats.beta(alpha + heads, beta + len(flips) - heads)


def default_data(seed: int = 0) -> dict:
    """20 flips of a coin with true bias 0.7 under a flat Beta(1, 1) prior."""
    rng = np.random.default_rng(seed)
    return {"flips": (rng.random(20) < 0.7).astype(np.float32), "alpha": 1.0, "beta": 1.0}


SPEC = register(
    ModelSpec(
        name="coin",
        model=coin,
        guide=None,
        default_data=default_data,
        engines=("nuts", "hmc", "svi", "map", "mle"),
        description="Beta-Bernoulli coin: flips_i ~ Bernoulli(p), p ~ Beta(alpha, beta); exact posterior",
        fields=(Field("flips", "binary", (("N",),), "coin flips, 1 = heads"),),
        options={
            "alpha": Option(1.0, "Beta prior pseudo-count of heads", low=1e-6),
            "beta": Option(1.0, "Beta prior pseudo-count of tails", low=1e-6),
            "N": Option(10, "number of flips to sample when flips is None", low=1),
        },
    )
)
