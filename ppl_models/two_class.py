"""The generative two-class classifier: a class prior and one Normal per class.

Generative story (the course's generative classifier):

    rho     ~ Beta(alpha, beta)                       P(Y = 1)
    mu_k    ~ Normal(xbar, 2.5 sd(x))                 k = 0, 1   class means
    sigma_k ~ HalfCauchy(sd(x))                       k = 0, 1   class standard deviations
    for i = 1..N:
        y_i ~ Bernoulli(rho)
        x_i ~ Normal(mu_{y_i}, sigma_{y_i}^2)

Classification is Bayes' rule,

    p(y = 1 | x) = rho N(x; mu_1, sigma_1^2) / (rho N(x; mu_1, sigma_1^2) + (1 - rho) N(x; mu_0, sigma_0^2)),

exposed as `class_posterior`. Given the labels the parameters separate: rho's posterior is exactly
Beta(alpha + n_1, beta + n_0) (`rho_posterior`), and the MLE is (class frequency, class means, class
standard deviations with ddof 0), `mle`. The priors of mu and sigma are weakly informative and scaled by
the data (standard Normal scale without x). Labels are observed, so there is no label switching.

Example:
    >>> from ppl_models.two_class import class_posterior
    >>> float(class_posterior(0.0, rho=0.5, mu=[-1.0, 1.0], sigma=[1.0, 1.0]))
    0.5
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from scipy import stats
from scipy.special import expit

from .data import Field, Option
from .registry import ModelSpec, register


def two_class(x: torch.Tensor | None = None, y: torch.Tensor | None = None, alpha: float = 1.0,
              beta: float = 1.0, N: int = 10) -> None:
    """Two-class Gaussian generative classifier; `x` (N,) real, `y` (N,) 0/1; ``None`` samples them."""
    x = None if x is None else torch.as_tensor(x, dtype=torch.get_default_dtype())
    y = None if y is None else torch.as_tensor(y, dtype=torch.get_default_dtype())
    n = len(x) if x is not None else len(y) if y is not None else N
    x_loc, x_scale = (float(x.mean()), float(x.std(unbiased=False)) or 1.0) if x is not None and n > 1 else (0.0, 1.0)

    rho = pyro.sample("rho", dist.Beta(alpha, beta))
    mu = pyro.sample("mu", dist.Normal(x_loc, 2.5 * x_scale).expand([2]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfCauchy(torch.tensor(x_scale)).expand([2]).to_event(1))

    with pyro.plate("N", n):
        y = pyro.sample("y", dist.Bernoulli(rho), obs=y)
        k = y.long()
        pyro.sample("x", dist.Normal(Vindex(mu)[..., k], Vindex(sigma)[..., k]), obs=x)


def class_posterior(x, rho, mu, sigma) -> np.ndarray:
    """p(y = 1 | x) by Bayes' rule, for x (N,) or a scalar; rho (...,), mu and sigma (..., 2).

    Leading draw dimensions of the parameters give (..., N): average over them for the posterior
    predictive probability. Computed in log space, so far tails give 0 or 1, not NaN.
    """
    x = np.asarray(x, dtype=float)
    rho = np.asarray(rho, dtype=float)[..., None]
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    log_1 = np.log(rho) + stats.norm.logpdf(x, mu[..., 1:2], sigma[..., 1:2])
    log_0 = np.log1p(-rho) + stats.norm.logpdf(x, mu[..., 0:1], sigma[..., 0:1])
    p = expit(log_1 - log_0)
    return p.reshape(p.shape[:-1] + x.shape) if x.ndim == 0 else p


def mle(x, y) -> dict[str, np.ndarray]:
    """Closed-form maximum-likelihood estimate: class frequency, class means and sds (ddof 0)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y).astype(int)
    return {"rho": np.asarray(y.mean()),
            "mu": np.array([x[y == k].mean() for k in (0, 1)]),
            "sigma": np.array([x[y == k].std() for k in (0, 1)])}


def rho_posterior(y, alpha: float = 1.0, beta: float = 1.0):
    """The exact posterior of rho: a frozen ``scipy.stats.beta(alpha + n_1, beta + n_0)``."""
    y = np.asarray(y, dtype=float)
    return stats.beta(alpha + y.sum(), beta + len(y) - y.sum())


TRUTH = {"rho": 0.4, "mu": [-1.0, 2.0], "sigma": [1.0, 0.7]}


def default_data(seed: int = 0) -> dict:
    """N = 200 draws from the model with rho = 0.4, mu = (-1, 2), sigma = (1, 0.7)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < TRUTH["rho"]).astype(int)
    x = rng.normal(np.asarray(TRUTH["mu"])[y], np.asarray(TRUTH["sigma"])[y])
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def _both_classes(y) -> str | None:
    present = set(torch.unique(y).tolist())
    return None if present == {0.0, 1.0} else f"needs both classes 0 and 1; only {sorted(present)} present"


SPEC = register(ModelSpec(
    name="two_class",
    model=two_class,
    guide=None,
    default_data=default_data,
    engines=("nuts", "hmc", "svi", "map", "mle"),
    description="Generative two-class classifier y_i ~ Bernoulli(rho), x_i ~ Normal(mu_{y_i}, sigma_{y_i}^2); "
                "Bayes-rule class posterior",
    fields=(Field("x", "real", (("N",),), "the feature"),
            Field("y", "binary", (("N",),), "class labels 0/1", check=_both_classes)),
    options={
        "alpha": Option(1.0, "Beta prior pseudo-count of class 1", low=1e-6),
        "beta": Option(1.0, "Beta prior pseudo-count of class 0", low=1e-6),
        "N": Option(10, "number of points to sample when x and y are None", low=1),
    },
    display={"plate_index": {"N": "i"}},
    demo={"num_chains": 4, "num_samples": 500, "num_warmup": 300},
))
