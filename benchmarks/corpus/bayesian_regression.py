"""The Bayesian regression tutorial's `BayesianRegression(PyroModule)`: `PyroModule[nn.Linear]` with
`PyroSample` priors on its weight and bias.

Source: tutorial/source/bayesian_regression.ipynb in Pyro's repository (the class `BayesianRegression`, as
written there; the tutorial fits it with ``BayesianRegression(3, 1)`` on the rugged data).

Changed: the tutorial downloads rugged_data.csv (170 nations with a GDP figure: ``cont_africa``, 0/1;
``rugged``, the terrain ruggedness index, 0 to about 6; their product; and the log of GDP per head in
2000). `data` generates data of the same shape and column meaning from a fixed seed instead, with
coefficients near the tutorial's least-squares fit (log GDP = 9.2 - 1.95 africa - 0.2 rugged + 0.4
africa x rugged, noise sd 0.95).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn

SOURCE = "tutorial/source/bayesian_regression.ipynb (BayesianRegression)"
IDIOM = "PyroModule[nn.Linear] + PyroSample"
CHEAP = True

NUM_NATIONS = 170


class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0., 1.).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0., 10.).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0., 10.))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            obs = pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


MODEL = BayesianRegression(3, 1)  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """``x_data`` (cont_africa, rugged, cont_africa_x_rugged) and ``y_data`` (log GDP), as the tutorial
    builds them from its data frame, for 170 synthetic nations drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    cont_africa = (torch.rand(NUM_NATIONS, generator=gen) < 0.29).float()
    rugged = (-1.2 * torch.log(torch.rand(NUM_NATIONS, generator=gen))).clamp(max=6.2)  # skewed, mean 1.2
    log_gdp = (9.2 - 1.95 * cont_africa - 0.2 * rugged + 0.4 * cont_africa * rugged
               + 0.95 * torch.randn(NUM_NATIONS, generator=gen))
    x_data = torch.stack([cont_africa, rugged, cont_africa * rugged], dim=-1)
    return {"x": x_data, "y": log_gdp}
