"""A Poisson regression with a log link, written ``torch.exp(b0 + X @ b)``.

Source: Pyro's examples and tutorials have no Poisson regression. This is the functional linear
regression users write after the Bayesian regression tutorial (an intercept, a coefficient vector by
``.expand([D]).to_event(1)``, ``X @ b`` in a data plate; as in tests/test_pyro_style_programs.py) with a
Poisson likelihood and the exponential inverse link written out. Synthetic data from a seed.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

SOURCE = "no Pyro example: the tutorial's functional regression with a Poisson likelihood"
IDIOM = "torch.exp(b0 + X @ b)"
CHEAP = True

N, D = 200, 3
TRUE_B0, TRUE_B = 0.5, (0.4, -0.3, 0.2)


def model(X, y=None):
    b0 = pyro.sample("b0", dist.Normal(0.0, 5.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("obs", dist.Poisson(torch.exp(b0 + X @ b)), obs=y)


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """200 rows of 3 standard-normal covariates and Poisson counts (intercept 0.5, coefficients 0.4,
    -0.3, 0.2), drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=gen)
    rate = torch.exp(TRUE_B0 + X @ torch.tensor(TRUE_B))
    return {"X": X, "y": torch.poisson(rate, generator=gen)}
