"""Eight schools, non-centred by `TransformReparam`, as the NumPyro documentation writes it.

Source: ``eight_schools_noncentered`` of NumPyro's README and "Getting started" page: theta is a
TransformedDistribution of Normal(0, 1) by AffineTransform(mu, tau), non-centred by
``reparam(config={"theta": TransformReparam()})``; written with Pyro's primitives (``numpyro.`` ->
``pyro.``, ``numpyro.handlers.reparam`` -> ``pyro.poutine.reparam``, ``dist.transforms`` is torch's);
nothing else changed. Priors as posteriordb's eight_schools_noncentered (mu ~ Normal(0, 5),
tau ~ HalfCauchy(5)), whose Stan reference draws are its oracle.

The reparametrised site is ``theta_base``; ``theta`` itself is recorded as an observed-like site, so a
fit's draws hold ``theta_base``, ``mu`` and ``tau`` (theta = mu + tau * theta_base).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.reparam import TransformReparam

SOURCE = "NumPyro README / Getting started: eight_schools_noncentered (TransformReparam), in Pyro"
IDIOM = "poutine.reparam(TransformReparam), TransformedDistribution(AffineTransform(mu, tau))"
CHEAP = True

J = 8
Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def eight_schools_noncentered(J, sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0, 5))
    tau = pyro.sample("tau", dist.HalfCauchy(5))
    with pyro.plate("J", J):
        with poutine.reparam(config={"theta": TransformReparam()}):
            theta = pyro.sample(
                "theta",
                dist.TransformedDistribution(dist.Normal(0.0, 1.0),
                                             dist.transforms.AffineTransform(mu, tau)),
            )
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


MODEL = eight_schools_noncentered  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """The eight effects and their standard errors. Fixed: `seed` is not used."""
    return {"J": J, "sigma": torch.tensor(SIGMA), "y": torch.tensor(Y)}
