"""A negative-binomial (GammaPoisson) regression that records its rate with `pyro.deterministic`.

Source: tutorial/source/predictive_deterministic.ipynb in Pyro's repository ("Example: Utilizing Predictive
and Deterministic with MCMC and SVI"), `model`, as written there, on the tutorial's own data (scikit-learn's
``make_regression(n_features=1, bias=150., noise=5., random_state=108)``, the target cubed, scaled, shifted,
rounded and clipped at 0: 100 counts). Nothing changed; `data(seed)` uses ``random_state=108 + seed``, so
seed 0 is the tutorial's data.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

SOURCE = "tutorial/source/predictive_deterministic.ipynb (model)"
IDIOM = "pyro.deterministic, coef @ features.T, GammaPoisson"
CHEAP = True


def model(features, counts):
    N, P = features.shape
    scale = pyro.sample("scale", dist.LogNormal(0, 1))
    coef = pyro.sample("coef", dist.Normal(0, scale).expand([P]).to_event(1))
    rate = pyro.deterministic("rate", torch.nn.functional.softplus(coef @ features.T))
    concentration = pyro.sample("concentration", dist.LogNormal(0, 1))
    with pyro.plate("bins", N):
        return pyro.sample("counts", dist.GammaPoisson(concentration, rate), obs=counts)


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """The tutorial's ``X_`` and ``y_`` (seed 0); another `seed` changes make_regression's random_state."""
    from sklearn.datasets import make_regression

    X, y = make_regression(n_features=1, bias=150., noise=5., random_state=108 + seed)
    X_ = torch.tensor(X, dtype=torch.float)
    y_ = torch.tensor((y**3)/100000. + 10., dtype=torch.float)
    y_.round_().clamp_(min=0)
    return {"features": X_, "counts": y_}
