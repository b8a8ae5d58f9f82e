"""The Gaussian mixture tutorial's model: a Categorical assignment per point, summed out by `config_enumerate`.

Source: tutorial/source/gmm.ipynb in Pyro's repository, `model` (K = 2 components, Dirichlet weights, a
shared LogNormal scale, ``locs[assignment]``) on the tutorial's five points, as written there; the
tutorial's last section runs NUTS on it (its posterior has two modes, the components swapped).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate

SOURCE = "tutorial/source/gmm.ipynb (model)"
IDIOM = "@config_enumerate, Categorical assignment, locs[assignment]"
CHEAP = False

K = 2  # Fixed number of components.


@config_enumerate
def model(data):
    # Global variables.
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))

    with pyro.plate("data", len(data)):
        # Local variables.
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """The tutorial's five points. Fixed: `seed` is not used."""
    return {"data": torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])}
