"""A horseshoe sparse regression: global and local half-Cauchy scales on the coefficients, ``X @ betas``.

Source: Pyro's examples/sparse_regression.py fits the horseshoe-type prior of [1] with the weights
integrated out by a kernel (a MAP fit of the scales, no ``X @ beta``); its NumPyro counterpart for NUTS,
examples/horseshoe_regression.py in the NumPyro repository (the Pyro project's), samples the weights
themselves. This is that program's `model_normal_likelihood`, written with Pyro's primitives
(``numpyro.`` -> ``pyro.``, ``jnp.ones`` -> ``torch.ones``, ``jnp.dot(X, b)`` -> ``X @ b``, ``jnp.sqrt`` ->
``torch.sqrt``; its comments left out); like the original it has no plate: every site is a batched distribution. Data as its
`get_data` makes them (3 non-zero coefficients 2, -1, 0.5; the response centred; noise sd 0.05), with
N = 50 rows and 10 covariates instead of 100 and 32, from a seed.

[1] The Kernel Interaction Trick: Fast Bayesian Discovery of Pairwise Interactions in High Dimensions,
    Agrawal, Huggins, Trippe, Broderick (2019).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch

SOURCE = "NumPyro examples/horseshoe_regression.py (model_normal_likelihood), in Pyro"
IDIOM = "HalfCauchy(torch.ones(D)) global/local scales, pyro.deterministic, X @ betas, no plate"
CHEAP = False

N, D_X = 50, 10


def model(X, Y):
    D_X = X.shape[1]

    lambdas = pyro.sample("lambdas", dist.HalfCauchy(torch.ones(D_X)))  # local scales
    tau = pyro.sample("tau", dist.HalfCauchy(torch.ones(1)))  # global scale

    unscaled_betas = pyro.sample("unscaled_betas", dist.Normal(0.0, torch.ones(D_X)))
    scaled_betas = pyro.deterministic("betas", tau * lambdas * unscaled_betas)
    mean_function = X @ scaled_betas

    prec_obs = pyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / torch.sqrt(prec_obs)
    pyro.sample("Y", dist.Normal(mean_function, sigma_obs), obs=Y)


MODEL = model  # the program: what `fit` is given


def data(seed: int = 0) -> dict:
    """`get_data` of the NumPyro example (continuous response), N = 50, 10 covariates, from `seed`."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D_X))
    # the response only depends on X_0, X_1, and X_2
    W = np.array([2.0, -1.0, 0.50])
    Y = X[:, :3] @ W
    Y -= Y.mean()
    Y += 0.05 * rng.standard_normal(N)
    return {"X": torch.tensor(X, dtype=torch.float), "Y": torch.tensor(Y, dtype=torch.float)}
