"""An LKJ prior on a correlation matrix with a multivariate normal likelihood: Pyro's examples/lkj.py.

Source: examples/lkj.py in Pyro's repository, `model`, as written there: HalfCauchy(torch.ones(d)) for
the variances outside any plate, LKJCholesky(d, 1), the covariance factor by torch.mm(torch.diag(...), ...),
MultivariateNormal(scale_tril=...) in a plate over the observations; the data in double precision, as the
example makes them.

Changed: the example fits 500 rows of uncorrelated noise in 5 variables; `data` draws 200 rows in 3
variables with correlations 0.6, -0.3 and 0.2 and standard deviations 1, 2 and 0.5, from a seed.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

SOURCE = "examples/lkj.py (model)"
IDIOM = "LKJCholesky, torch.mm(torch.diag(theta.sqrt()), L_omega), float64 data"
CHEAP = True

N = 200
CORRELATION = ((1.0, 0.6, -0.3), (0.6, 1.0, 0.2), (-0.3, 0.2, 1.0))
SCALES = (1.0, 2.0, 0.5)


def model(y):
    d = y.shape[1]
    N = y.shape[0]
    options = dict(dtype=y.dtype, device=y.device)
    # Vector of variances for each of the d variables
    theta = pyro.sample("theta", dist.HalfCauchy(torch.ones(d, **options)))
    # Lower cholesky factor of a correlation matrix
    concentration = torch.ones(
        (), **options
    )  # Implies a uniform distribution over correlation matrices
    L_omega = pyro.sample("L_omega", dist.LKJCholesky(d, concentration))
    # Lower cholesky factor of the covariance matrix
    L_Omega = torch.mm(torch.diag(theta.sqrt()), L_omega)
    # For inference with SVI, one might prefer to use torch.bmm(theta.sqrt().diag_embed(), L_omega)

    # Vector of expectations
    mu = torch.zeros(d, **options)

    with pyro.plate("observations", N):
        obs = pyro.sample("obs", dist.MultivariateNormal(mu, scale_tril=L_Omega), obs=y)
    return obs


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """200 rows of a zero-mean 3-variable normal (the correlations and scales above), float64, from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor(SCALES, dtype=torch.double)
    covariance = torch.tensor(CORRELATION, dtype=torch.double) * scales[:, None] * scales[None, :]
    factor = torch.linalg.cholesky(covariance)
    y = torch.randn(N, len(SCALES), generator=gen, dtype=torch.double) @ factor.T
    return {"y": y}
