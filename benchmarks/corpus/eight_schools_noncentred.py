"""Eight schools, non-centred, as Pyro's MCMC example writes it: no plate, the observation conditioned in.

Source: examples/eight_schools/mcmc.py (`model` and `conditioned_model`) with examples/eight_schools/data.py,
in Pyro's repository, as written there (priors mu ~ Normal(0, 10), tau ~ HalfCauchy(25); every site a
batched distribution outside any plate).

Changed: the example runs ``mcmc.run(model, data.sigma, data.y)`` on `conditioned_model`, whose first
argument is the model function itself; `eight_schools` below is that call with the model bound, so that
the program takes its data alone. `data.J` is the module constant `J`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

SOURCE = "examples/eight_schools/mcmc.py (model, conditioned_model)"
IDIOM = "no plate: Normal(torch.zeros(J), torch.ones(J)), poutine.condition"
CHEAP = True

J = 8
Y = (28, 8, -3, 7, -1, 1, 18, 12)
SIGMA = (15, 10, 16, 11, 9, 11, 10, 18)


def model(sigma):
    eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))

    theta = mu + tau * eta

    return pyro.sample("obs", dist.Normal(theta, sigma))


def conditioned_model(model, sigma, y):
    return poutine.condition(model, data={"obs": y})(sigma)


def eight_schools(sigma, y):
    """The example's ``conditioned_model(model, sigma, y)``."""
    return conditioned_model(model, sigma, y)


MODEL = eight_schools  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """examples/eight_schools/data.py: the eight effects and their standard errors. Fixed: `seed` is not used."""
    return {"sigma": torch.tensor(SIGMA).type(torch.Tensor), "y": torch.tensor(Y).type(torch.Tensor)}
