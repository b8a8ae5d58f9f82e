"""The input checks and run safety hold on programs written the way Pyro's examples write them.

`X @ b` (the Bayesian regression tutorial), `a[g]` group indexing with an integer index tensor,
`PyroModule[nn.Linear]` with `PyroSample` priors, and `examples/lkj.py`'s LKJCholesky model, as written
there. Each fits, agrees with its oracle (least squares, the sample correlation), and bad data in it is one
line naming the user's own argument.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn

from inference import InputError, fit
from ppl_models import DataError

torch.manual_seed(0)
N, D, G = 200, 3, 4
X = torch.randn(N, D)
Y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.5 * torch.randn(N)
GROUP = torch.randint(0, G, (N,))
YB = torch.bernoulli(torch.sigmoid(torch.tensor([-1.0, 0.0, 1.0, 2.0])[GROUP]))


def linreg(X, y=None):
    b0 = pyro.sample("b0", dist.Normal(0.0, 10.0))
    b = pyro.sample("b", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("obs", dist.Normal(b0 + X @ b, sigma), obs=y)


def hierarchical(g, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = pyro.sample("tau", dist.HalfNormal(1.0))
    with pyro.plate("groups", G):
        a = pyro.sample("a", dist.Normal(mu, tau))
    with pyro.plate("data", len(g)):
        pyro.sample("y", dist.Bernoulli(logits=a[g]), obs=y)


class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def lkj(y):  # pyro/examples/lkj.py's model, as written there
    d = y.shape[1]
    N = y.shape[0]
    options = dict(dtype=y.dtype, device=y.device)
    theta = pyro.sample("theta", dist.HalfCauchy(torch.ones(d, **options)))
    concentration = torch.ones((), **options)
    L_omega = pyro.sample("L_omega", dist.LKJCholesky(d, concentration))
    L_Omega = torch.mm(torch.diag(theta.sqrt()), L_omega)
    mu = torch.zeros(d, **options)
    with pyro.plate("observations", N):
        return pyro.sample("obs", dist.MultivariateNormal(mu, scale_tril=L_Omega), obs=y)


def least_squares() -> np.ndarray:
    design = np.column_stack([np.ones(N), X.numpy()])
    return np.linalg.lstsq(design, Y.numpy(), rcond=None)[0]


def test_matmul_and_pyro_module_regressions_reach_least_squares_by_map():
    ls = least_squares()
    post = fit(linreg, {"X": X, "y": Y}, method="map", progress=False)
    np.testing.assert_allclose(post.samples["b"][0, 0], ls[1:], atol=0.02)  # priors of sd 10: near OLS
    module = fit(BayesianRegression(D, 1), {"x": X, "y": Y}, method="map", progress=False)
    np.testing.assert_allclose(module.samples["linear.weight"][0, 0, 0], ls[1:], atol=0.02)


def test_an_integer_index_and_integer_observations_work_as_written():
    as_float = fit(hierarchical, {"g": GROUP, "y": YB}, method="map", progress=False)
    as_int = fit(hierarchical, {"g": GROUP, "y": YB.long()}, method="map", progress=False)
    np.testing.assert_allclose(as_int.samples["a"], as_float.samples["a"], rtol=1e-5)
    assert as_int.data["g"].dtype == torch.long  # the index stays an index


@pytest.mark.parametrize("model, data, field, problem", [
    (linreg, {"X": X.clone().index_put_((torch.tensor([5]), torch.tensor([1])), torch.tensor(float("nan"))),
              "y": Y}, "X", "contains NaN (first at index (5, 1))"),
    (hierarchical, {"g": GROUP, "y": torch.where(torch.arange(N) == 7, 2.0, YB)}, "y",
     "2 (first at index 7) is outside the support of the Bernoulli"),
    (BayesianRegression(D, 1), {"x": X, "y": Y[:-1]}, "y", "has shape (199,)"),
])
@pytest.mark.parametrize("method", ["nuts", "map"])
def test_bad_data_in_a_users_program_names_the_users_argument(model, data, field, problem, method):
    budget = {"num_samples": 10, "num_warmup": 10} if method == "nuts" else {}
    with pytest.raises((InputError, DataError)) as caught:  # the data layer's or the engines' (issue 25: one)
        fit(model, data, method=method, progress=False, **budget)
    assert caught.value.field == field and problem in caught.value.problem
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_lkj_example_as_written_samples_the_data_s_correlation():
    torch.manual_seed(1)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, 0.6], [0.6, 1.0]]))
    y = (chol @ torch.randn(2, 300)).T
    post = fit(lkj, {"y": y}, method="nuts", num_chains=2, num_samples=300, num_warmup=300, progress=False)
    corr = post.samples["L_omega"][..., 1, 0]  # the correlation is the (1, 0) entry of L_omega
    sample = float(np.corrcoef(y.numpy().T)[0, 1])
    se = (1 - sample**2) / np.sqrt(len(y))  # the sample correlation's standard error
    assert abs(corr.mean() - sample) < 4 * se
    assert post.problems() == [] or all("ESS" in p for p in post.problems())
