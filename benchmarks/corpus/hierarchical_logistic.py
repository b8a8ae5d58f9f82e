"""A hierarchical logistic regression: varying intercepts picked per row by an integer group index, ``a[g]``.

Source: Pyro's examples and tutorials have no varying-intercept regression. This is the program as users
write it (and as tests/test_pyro_style_programs.py's `hierarchical` does): group intercepts in a plate
over the groups, a long tensor of group labels indexing them inside the data plate, plus a common slope.
Synthetic data from a seed.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

SOURCE = "no Pyro example: varying intercepts a[g] as users write them"
IDIOM = "a[g] with a long index tensor"
CHEAP = True

N, G = 200, 4
TRUE_A, TRUE_B = (-1.0, 0.0, 1.0, 2.0), 0.7


def model(x, g, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = pyro.sample("tau", dist.HalfNormal(1.0))
    with pyro.plate("groups", G):
        a = pyro.sample("a", dist.Normal(mu, tau))
    b = pyro.sample("b", dist.Normal(0.0, 2.0))
    with pyro.plate("data", len(g)):
        pyro.sample("y", dist.Bernoulli(logits=a[g] + b * x), obs=y)


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """200 rows in 4 groups (long labels 0-3), a standard-normal covariate and 0/1 outcomes (group
    intercepts -1, 0, 1, 2; slope 0.7), drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randint(0, G, (N,), generator=gen)
    x = torch.randn(N, generator=gen)
    y = torch.bernoulli(torch.sigmoid(torch.tensor(TRUE_A)[g] + TRUE_B * x), generator=gen)
    return {"x": x, "g": g, "y": y}
