"""Mixture of Bernoullis: K coins with unknown biases; each observation is tossed with a coin picked at random.

Generative story (the course's "GenerateTosses"; the K loop and the N loop are separate, not nested):

    for i = 1..K:
        theta_i ~ Beta(alpha, beta)          # bias of coin i
    pi ~ Dirichlet(gamma, ..., gamma)        # how often each coin is picked
    for j = 1..N:
        z_j ~ Categorical(pi)                # which coin (enumerated: summed out, never sampled)
        x_j ~ Bernoulli(theta_{z_j})         # its toss

Identifiability. With one toss per observation (`flips` of shape (N,), the course's picture) the data
only inform the overall rate sum_i pi_i theta_i: the coins' biases are *not* identified, whatever N is.
`flips` may therefore also be (N, M): observation j is M tosses of the same coin z_j (M = 1 is the
course's story). The default data set uses M = 20, where the biases are identified and recovered.

Label switching. The prior is symmetric in the coins, so the posterior has K! equivalent modes and
MCMC chains may settle in different ones. `relabel` sorts every draw's coins by bias (a documented
post-hoc relabelling); apply it to `Posterior.samples` before judging R-hat or comparing with a truth.

Example:
    >>> import torch, pyro
    >>> from ppl_models.coin_mixture import coin_mixture, default_data
    >>> data = default_data(seed=0)
    >>> data["flips"].shape, data["K"]
    ((60, 20), 2)
    >>> trace = pyro.poutine.trace(coin_mixture).get_trace(flips=torch.as_tensor(data["flips"]))
    >>> trace.nodes["theta"]["value"].shape
    torch.Size([2])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from .data import Field, Option
from .registry import ModelSpec, register

TRUE_THETA = (0.2, 0.8)
TRUE_PI = (0.4, 0.6)


def coin_mixture(flips: torch.Tensor | None = None, K: int = 2, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 1.0, N: int = 10, M: int = 1) -> None:
    """Mixture of K Bernoulli coins. `flips` is (N,) or (N, M) of 0/1; `None` samples N x M tosses."""
    num_obs = flips.shape[0] if flips is not None else N
    tosses = (flips.shape[1] if flips.dim() == 2 else None) if flips is not None else (M if M > 1 else None)
    with pyro.plate("K", K):
        theta = pyro.sample("theta", dist.Beta(alpha, beta))
    pi = pyro.sample("pi", dist.Dirichlet(gamma * torch.ones(K)))
    with pyro.plate("N", num_obs):
        z = pyro.sample("z", dist.Categorical(pi))
        bias = Vindex(theta.unsqueeze(-2))[..., z]  # theta_{z_j}; the K-plate axis leaves the batch dims
        if tosses is None:
            pyro.sample("flips", dist.Bernoulli(bias), obs=flips)
        else:  # M tosses of the same coin z_j
            pyro.sample("flips", dist.Bernoulli(bias.unsqueeze(-1).expand(bias.shape + (tosses,))).to_event(1),
                        obs=flips)


def relabel(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sort each draw's coins by increasing bias: permute `theta` and `pi`, and map `z` to the new labels.

    `samples` holds arrays shaped (chain, draw, ...) as in `Posterior.samples`; a new dict is returned.
    """
    out = dict(samples)
    theta = np.asarray(samples["theta"])
    order = np.argsort(theta, axis=-1)  # order[..., new] = old
    out["theta"] = np.take_along_axis(theta, order, axis=-1)
    if "pi" in samples:
        out["pi"] = np.take_along_axis(np.asarray(samples["pi"]), order, axis=-1)
    if "z" in samples:
        rank = np.argsort(order, axis=-1)  # rank[..., old] = new
        z = np.asarray(samples["z"]).astype(np.int64)
        flat_rank = rank.reshape(rank.shape[:2] + (1,) * (z.ndim - 2) + rank.shape[-1:])
        out["z"] = np.take_along_axis(np.broadcast_to(flat_rank, z.shape + rank.shape[-1:]), z[..., None],
                                      axis=-1)[..., 0]
    return out


def default_data(seed: int = 0) -> dict:
    """60 observations of 20 tosses each, from two coins with biases 0.2 and 0.8 picked 40 % / 60 %."""
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=60, p=TRUE_PI)
    flips = (rng.random((60, 20)) < np.asarray(TRUE_THETA)[z][:, None]).astype(np.float32)
    return {"flips": flips, "K": 2, "alpha": 1.0, "beta": 1.0, "gamma": 1.0}


SPEC = register(
    ModelSpec(
        name="coin_mixture",
        model=coin_mixture,
        guide=None,
        relabel=relabel,
        default_data=default_data,
        engines=("nuts", "hmc", "svi", "map", "mle"),
        description="Mixture of Bernoullis: theta_i ~ Beta, pi ~ Dir, z_j ~ Cat(pi) enumerated, "
                    "x_j ~ Bernoulli(theta_{z_j})",
        fields=(Field("flips", "binary", (("N",), ("N", "M")),
                      "tosses, 1 = heads; (N,) one toss per observation or (N, M) M tosses of one coin each"),),
        options={
            "K": Option(2, "number of coins (mixture components)", low=1),
            "alpha": Option(1.0, "Beta prior pseudo-count of heads for each coin", low=1e-6),
            "beta": Option(1.0, "Beta prior pseudo-count of tails for each coin", low=1e-6),
            "gamma": Option(1.0, "symmetric Dirichlet concentration of the mixing weights pi", low=1e-6),
            "N": Option(10, "number of observations to sample when flips is None", low=1),
            "M": Option(1, "tosses per observation to sample when flips is None", low=1),
        },
        display={"plate_index": {"K": "i", "N": "j"}, "labels": {"flips": "x"}},
        demo={"num_chains": 4, "num_samples": 500, "num_warmup": 300},
    )
)
