"""Eight schools, centred, as the NumPyro documentation writes it (Pyro's own examples have only the
non-centred model).

Source: the eight schools model of NumPyro's README and "Getting started" page (``eight_schools(J, sigma,
y=None)``: mu ~ Normal(0, 5), tau ~ HalfCauchy(5), theta ~ Normal(mu, tau) in a plate of J schools),
written with Pyro's primitives (``numpyro.`` -> ``pyro.``); nothing else changed. Its posterior is
posteriordb's eight_schools (the same priors), in the parametrisation that gives NUTS a funnel.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

SOURCE = "NumPyro README / Getting started: eight_schools (centred), in Pyro"
IDIOM = "J as an int argument, plate('J', J)"
CHEAP = True

J = 8
Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def eight_schools(J, sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0, 5))
    tau = pyro.sample("tau", dist.HalfCauchy(5))
    with pyro.plate("J", J):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


MODEL = eight_schools  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """The eight effects and their standard errors (the number of schools is a plain int, as the docs pass
    it). Fixed: `seed` is not used."""
    return {"J": J, "sigma": torch.tensor(SIGMA), "y": torch.tensor(Y)}
