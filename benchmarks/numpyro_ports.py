"""NumPyro versions of the corpus programs (`benchmarks/corpus`), for `benchmarks/user_programs.py`.

Each port has its program's priors, likelihood, site names and site shapes, so the draws of both compare
site by site; it takes the same keyword arguments, converted by `numpyro_data` from the program's
``data(seed)``. Where NumPyro's idiom differs from Pyro's (a PyroModule's parameters, ``pyro.markov``),
the port writes the same model NumPyro's way, and its docstring says so. The enumerated programs need
``funsor`` (NumPyro sums discrete sites out through it).

    PORTS["baseball"](**numpyro_data(PROGRAMS["baseball"].data(0)))
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.handlers import mask, reparam
from numpyro.contrib.funsor import config_enumerate
from numpyro.infer.reparam import TransformReparam


def numpyro_data(data: dict[str, Any]) -> dict[str, Any]:
    """A program's data for its port: tensors and arrays as JAX arrays (floats as float32, integers as
    int32: JAX's defaults), anything else (a number of states, a size) as it is."""
    out = {}
    for key, value in data.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            value = jnp.asarray(value, dtype=jnp.float32 if np.issubdtype(value.dtype, np.floating)
                                else jnp.int32 if np.issubdtype(value.dtype, np.integer) else value.dtype)
        out[key] = value
    return out


def baseball(at_bats, hits):
    """examples/baseball.py `partially_pooled`: m ~ Uniform(0, 1), kappa ~ Pareto(1, 1.5),
    phi_i ~ Beta(m kappa, (1 - m) kappa), hits_i ~ Binomial(at_bats_i, phi_i)."""
    m = numpyro.sample("m", dist.Uniform(0.0, 1.0))
    kappa = numpyro.sample("kappa", dist.Pareto(1.0, 1.5))
    with numpyro.plate("num_players", at_bats.shape[0]):
        phi = numpyro.sample("phi", dist.Beta(m * kappa, (1 - m) * kappa))
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def eight_schools_centred(J, sigma, y=None):
    """NumPyro's README `eight_schools`: mu ~ Normal(0, 5), tau ~ HalfCauchy(5), theta_j ~ Normal(mu, tau)."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentred(sigma, y):
    """examples/eight_schools/mcmc.py: eta ~ Normal(0, 1) (8 of them, no plate), mu ~ Normal(0, 10) and
    tau ~ HalfCauchy(25) of shape (1,), y ~ Normal(mu + tau eta, sigma)."""
    J = sigma.shape[0]
    eta = numpyro.sample("eta", dist.Normal(jnp.zeros(J), jnp.ones(J)))
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros(1), 10 * jnp.ones(1)))
    tau = numpyro.sample("tau", dist.HalfCauchy(scale=25 * jnp.ones(1)))
    return numpyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def eight_schools_reparam(J, sigma, y=None):
    """NumPyro's README `eight_schools_noncentered`: theta by TransformReparam of Normal(0, 1) under
    AffineTransform(mu, tau); the sampled site is ``theta_base``."""
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        with reparam(config={"theta": TransformReparam()}):
            theta = numpyro.sample("theta", dist.TransformedDistribution(
                dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(mu, tau)))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def bayesian_regression(x, y=None):
    """The tutorial's `BayesianRegression(3, 1)`, its PyroModule[nn.Linear] written out: ``linear.weight``
    (1, 3) ~ Normal(0, 1), ``linear.bias`` (1,) ~ Normal(0, 10), sigma ~ Uniform(0, 10),
    y ~ Normal(x weight^T + bias, sigma). Site names and shapes are the PyroModule's."""
    sigma = numpyro.sample("sigma", dist.Uniform(0.0, 10.0))
    weight = numpyro.sample("linear.weight", dist.Normal(0.0, 1.0).expand([1, x.shape[-1]]).to_event(2))
    bias = numpyro.sample("linear.bias", dist.Normal(0.0, 10.0).expand([1]).to_event(1))
    mean = (x @ weight.T + bias).squeeze(-1)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("obs", dist.Normal(mean, sigma), obs=y)
    return mean


def poisson_glm(X, y=None):
    """b0 ~ Normal(0, 5), b ~ Normal(0, 1) (D of them), y_i ~ Poisson(exp(b0 + X_i . b))."""
    b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("obs", dist.Poisson(jnp.exp(b0 + X @ b)), obs=y)


def hierarchical_logistic(x, g, y=None):
    """mu ~ Normal(0, 2), tau ~ HalfNormal(1), a_k ~ Normal(mu, tau) (4 groups), b ~ Normal(0, 2),
    y_i ~ Bernoulli(logit = a[g_i] + b x_i)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("groups", 4):
        a = numpyro.sample("a", dist.Normal(mu, tau))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0))
    with numpyro.plate("data", g.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a[g] + b * x), obs=y)


def lkj(y):
    """examples/lkj.py: theta ~ HalfCauchy(1) (d of them, no plate), L_omega ~ LKJCholesky(d, 1),
    y_n ~ MultivariateNormal(0, scale_tril = diag(sqrt(theta)) L_omega)."""
    N, d = y.shape
    theta = numpyro.sample("theta", dist.HalfCauchy(jnp.ones(d)))
    L_omega = numpyro.sample("L_omega", dist.LKJCholesky(d, jnp.ones(())))
    L_Omega = jnp.diag(jnp.sqrt(theta)) @ L_omega
    with numpyro.plate("observations", N):
        return numpyro.sample("obs", dist.MultivariateNormal(jnp.zeros(d), scale_tril=L_Omega), obs=y)


def horseshoe(X, Y):
    """NumPyro's examples/horseshoe_regression.py `model_normal_likelihood`, the corpus's version: lambdas
    ~ HalfCauchy(1) (D), tau ~ HalfCauchy(1) of shape (1,), unscaled_betas ~ Normal(0, 1) (D),
    betas = tau lambdas unscaled_betas (deterministic), prec_obs ~ Gamma(3, 1), Y ~ Normal(X betas,
    1 / sqrt(prec_obs))."""
    D_X = X.shape[1]
    lambdas = numpyro.sample("lambdas", dist.HalfCauchy(jnp.ones(D_X)))
    tau = numpyro.sample("tau", dist.HalfCauchy(jnp.ones(1)))
    unscaled_betas = numpyro.sample("unscaled_betas", dist.Normal(0.0, jnp.ones(D_X)))
    scaled_betas = numpyro.deterministic("betas", tau * lambdas * unscaled_betas)
    prec_obs = numpyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    numpyro.sample("Y", dist.Normal(X @ scaled_betas, 1.0 / jnp.sqrt(prec_obs)), obs=Y)


def negbin_glm(features, counts):
    """The predictive/deterministic tutorial's model: scale ~ LogNormal(0, 1), coef ~ Normal(0, scale) (P),
    rate = softplus(coef . features) (deterministic), concentration ~ LogNormal(0, 1),
    counts ~ GammaPoisson(concentration, rate)."""
    N, P = features.shape
    scale = numpyro.sample("scale", dist.LogNormal(0, 1))
    coef = numpyro.sample("coef", dist.Normal(0, scale).expand([P]).to_event(1))
    rate = numpyro.deterministic("rate", jax.nn.softplus(coef @ features.T))
    concentration = numpyro.sample("concentration", dist.LogNormal(0, 1))
    with numpyro.plate("bins", N):
        return numpyro.sample("counts", dist.GammaPoisson(concentration, rate), obs=counts)


@config_enumerate
def gmm(data):
    """The GMM tutorial's model (K = 2): weights ~ Dirichlet(0.5, 0.5), scale ~ LogNormal(0, 2),
    locs_k ~ Normal(0, 10), assignment_n ~ Categorical(weights) summed out, data_n ~ Normal(locs[a_n], scale)."""
    K = 2
    weights = numpyro.sample("weights", dist.Dirichlet(0.5 * jnp.ones(K)))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with numpyro.plate("components", K):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", data.shape[0]):
        assignment = numpyro.sample("assignment", dist.Categorical(weights))
        numpyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def hmm(sequences, lengths, args, include_prior=True):
    """examples/hmm.py `model_1` as NumPyro's examples/hmm_enum.py writes it: the same priors (probs_x
    rows ~ Dirichlet(0.9 I + 0.1), probs_y ~ Beta(0.1, 0.9)), the state enumerated and the time loop a
    `scan` (NumPyro's idiom for ``pyro.markov``), masked past each sequence's length."""
    num_sequences, max_length, data_dim = sequences.shape
    with mask(mask=include_prior):
        probs_x = numpyro.sample("probs_x", dist.Dirichlet(0.9 * jnp.eye(args.hidden_dim) + 0.1).to_event(1))
        probs_y = numpyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([args.hidden_dim, data_dim]).to_event(2))

    def transition(carry, y):
        x_prev, t = carry
        with numpyro.plate("sequences", num_sequences, dim=-2):
            with mask(mask=(t < lengths)[..., None]):
                x = numpyro.sample("x", dist.Categorical(probs_x[x_prev]), infer={"enumerate": "parallel"})
                with numpyro.plate("tones", data_dim, dim=-1):
                    numpyro.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
        return (x, t + 1), None

    x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
    scan(transition, (x_init, 0), jnp.swapaxes(sequences, 0, 1))


PORTS: dict[str, Callable] = {f.__name__: f for f in (
    baseball, eight_schools_centred, eight_schools_noncentred, eight_schools_reparam, bayesian_regression,
    poisson_glm, hierarchical_logistic, lkj, horseshoe, negbin_glm, gmm, hmm)}

# the port whose long run is a program's reference where the program's own parametrisation is not one NUTS
# samples reliably: the centred eight schools' funnel has the same posterior as the reparametrised program
# (same priors, same data; theta recorded as a deterministic site there)
REFERENCE_PORTS: dict[str, str] = {"eight_schools_centred": "eight_schools_reparam"}
