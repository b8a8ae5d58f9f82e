"""Baseball batting averages by partial pooling: `partially_pooled` of Pyro's examples/baseball.py.

Source: examples/baseball.py in Pyro's repository (the Stan case study "Hierarchical Partial Pooling
for Repeated Binary Trials" ported to Pyro), the model `partially_pooled`, as written there.

Changed: the example downloads EfronMorrisBB.txt; its training columns (``At-Bats``, ``Hits``: each
player's first 45 at-bats of the 1970 season) are embedded here as literals from Efron & Morris (1975),
Table 1, with each player's batting average over the rest of that season (what the example predicts; the
model does not read it).
"""

from __future__ import annotations

import pyro
import torch
from pyro.distributions import Beta, Binomial, Pareto, Uniform
from pyro.distributions.util import scalar_like

SOURCE = "examples/baseball.py (partially_pooled)"
IDIOM = "scalar_like, Beta(m * kappa, (1 - m) * kappa) in a plate"
CHEAP = True

PLAYERS = ("Roberto Clemente", "Frank Robinson", "Frank Howard", "Jay Johnstone", "Ken Berry", "Jim Spencer",
           "Don Kessinger", "Luis Alvarado", "Ron Santo", "Ron Swoboda", "Del Unser", "Billy Williams",
           "George Scott", "Rico Petrocelli", "Ellie Rodriguez", "Bert Campaneris", "Thurman Munson", "Max Alvis")
AT_BATS = 45
HITS = (18, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7)
REST_OF_SEASON_AVERAGE = (0.346, 0.298, 0.276, 0.222, 0.273, 0.270, 0.263, 0.210, 0.269, 0.230, 0.264, 0.256,
                          0.303, 0.264, 0.226, 0.286, 0.316, 0.200)


def partially_pooled(at_bats, hits):
    r"""
    Number of hits has a Binomial distribution with independent
    probability of success, $\phi_i$. Each $\phi_i$ follows a Beta
    distribution with concentration parameters $c_1$ and $c_2$, where
    $c_1 = m * kappa$, $c_2 = (1 - m) * kappa$, $m ~ Uniform(0, 1)$,
    and $kappa ~ Pareto(1, 1.5)$.

    :param (torch.Tensor) at_bats: Number of at bats for each player.
    :param (torch.Tensor) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    m = pyro.sample("m", Uniform(scalar_like(at_bats, 0), scalar_like(at_bats, 1)))
    kappa = pyro.sample(
        "kappa", Pareto(scalar_like(at_bats, 1), scalar_like(at_bats, 1.5))
    )
    with pyro.plate("num_players", num_players):
        phi_prior = Beta(m * kappa, (1 - m) * kappa)
        phi = pyro.sample("phi", phi_prior)
        return pyro.sample("obs", Binomial(at_bats, phi), obs=hits)


MODEL = partially_pooled  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """The example's training data (`train_test_split`'s first columns): 45 at-bats and the hits of each of
    the 18 players, float tensors as the example makes them. The data are fixed: `seed` is not used."""
    return {"at_bats": torch.full((len(HITS),), float(AT_BATS)),
            "hits": torch.tensor(HITS, dtype=torch.float)}
