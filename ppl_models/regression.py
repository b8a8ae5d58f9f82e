"""The regression family: linear, logistic (two classes) and softmax (K classes) regression.

Generative story (the course's supervised picture: the parameters sit outside the plate, each pair
(x_i, y_i) inside it, both observed):

    coef_d    ~ Normal(0, s) | Laplace(0, s) | "flat"        d = 1..D   (ridge, lasso, none)
    intercept ~ Normal(m - coef . xbar, s_0)                 the fitted value at the data's centre
    sigma     ~ HalfCauchy(s_sigma)                          (linear regression only)
    for i = 1..N:
        eta_i = intercept + coef . x_i
        y_i ~ Normal(eta_i, sigma) | Laplace(eta_i, sigma) | StudentT(df, eta_i, sigma)     linear
        y_i ~ Bernoulli(sigmoid(eta_i))                                                     logistic
        y_i ~ Categorical(softmax(intercept_k + coef_{:,k} . x_i))                          softmax

Conventions shared by the three models (see docs/models-regression.md):

- **Intercept prior at the centre of the data.** The intercept's prior is placed on the fitted value at
  the mean of X (``intercept + coef . xbar``), as rstanarm does, so that it is weakly informative
  whatever the location of X. Written on the user's sites this is the conditional prior above. For
  linear regression with m = mean(y) the prior term is exactly zero at the MAP, whatever the coefficient
  penalty, so the intercept is unpenalised as in scikit-learn's ``Ridge``/``Lasso``. For logistic and
  softmax regression it is a real, weak penalty on the log-odds at the centre (a large
  ``intercept_scale`` removes it).
- **Weakly-informative defaults are scaled by the data** (rstanarm's "autoscale"): m = mean(y),
  s_0 = 2.5 sd(y), s_sigma = sd(y) for linear regression; m = 0, s_0 = 2.5 on the logit scale for
  logistic and softmax regression. Without ``y`` (prior predictive) the data scale is 1.
- **"flat"** is a proper but very wide prior: 1000 natural units (sd(y) / sd(x_d) per coefficient,
  1000 sd(y) for the intercept), which gives the flat-prior posterior to well within Monte-Carlo error.
- **standardize=True** places the coefficient prior on the standardised scale: coef_d * sd(x_d) ~
  Normal(0, s) (or Laplace), i.e. coef_d ~ Normal(0, s / sd(x_d)). The latent sites stay on the user's
  scale, so nothing is transformed back: the posterior is exactly the image of the posterior of the
  model fitted to standardised X, and predictions on new X use the user's X directly.

Example:
    >>> import torch, pyro
    >>> from ppl_models.regression import linear_regression
    >>> X, y = torch.randn(20, 3), torch.randn(20)
    >>> trace = pyro.poutine.trace(linear_regression).get_trace(X, y, prior="laplace", prior_scale=0.5)
    >>> tuple(trace.nodes["coef"]["value"].shape)
    (3,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from .data import DataError, Field, Option
from .registry import ModelSpec, register

FLAT = 1e3  # "flat" priors are this many natural units wide
PRIORS = ("normal", "laplace", "flat")
NOISES = ("normal", "laplace", "student_t")


# ---- shared pieces ------------------------------------------------------------------------------------
def _summary(t: torch.Tensor) -> torch.Tensor:
    """A summary of the data used as a fixed constant of a prior (like a hyperparameter): a fresh tensor,
    so diagrams show x_i inside the data plate rather than as a parent of the prior."""
    return torch.tensor(t.tolist(), dtype=t.dtype)


def _column_sd(X: torch.Tensor) -> torch.Tensor:
    """Standard deviation (ddof 0) of each column of X; constant columns count as 1 (they carry no scale)."""
    values = np.asarray(X.detach().cpu().numpy(), dtype=float)
    sd = values.std(0) if X.shape[0] > 1 else np.ones(X.shape[-1])
    return torch.as_tensor(np.where(sd > 0, sd, 1.0), dtype=X.dtype)


def _standardize_problem(X: torch.Tensor) -> str | None:
    sd = X.std(0, unbiased=False) if X.shape[0] > 1 else torch.zeros(X.shape[-1])
    constant = torch.nonzero(sd == 0).flatten().tolist()
    if constant:
        return (f"column {constant[0]} is constant, so it cannot be standardized (it duplicates the "
                "intercept); drop it or use standardize=False")
    return None


def _classes_problem(y: torch.Tensor | None, K: int | None) -> tuple[str, str] | None:
    if K is None and y is None:
        return "K", "is needed when y is not given"
    if y is not None and K is not None and int(y.max()) >= K:
        return "y", f"holds class {int(y.max())} but K = {K} (classes are 0..K-1)"
    if y is not None and K is None and int(y.max()) < 1:
        return "y", "holds only class 0; give K or data with at least two classes"
    return None


def _coef_prior(X: torch.Tensor, prior: str, prior_scale: float, standardize: bool, natural: float,
                shape: tuple[int, ...]) -> dist.Distribution:
    """The coefficients' prior, one scale per predictor (row of `shape`), as one event of `shape`."""
    # validation (`_CheckedSpec.validate`) refuses these first; a direct call gets a Pyro-safe ValueError
    if prior not in PRIORS:
        raise ValueError(f"prior: must be one of {', '.join(PRIORS)}; got {prior!r}")
    if standardize and _standardize_problem(X):
        raise ValueError(f"X: {_standardize_problem(X)}")
    sd = _column_sd(X).reshape((-1,) + (1,) * (len(shape) - 1))
    if prior == "flat":
        scale = FLAT * natural / sd
    elif standardize:
        scale = prior_scale / sd
    else:
        scale = torch.full((shape[0],) + (1,) * (len(shape) - 1), float(prior_scale))
    family = dist.Laplace if prior == "laplace" else dist.Normal
    return family(torch.zeros(shape), scale.expand(shape)).to_event(len(shape))


def _intercept_scale(prior: str, intercept_scale: float | None, natural: float) -> float:
    if intercept_scale is not None:
        return float(intercept_scale)
    return FLAT * natural if prior == "flat" else 2.5 * natural


def _data_scale(y: torch.Tensor | None) -> tuple[float, float]:
    """(mean, sd) of the outcome, the natural location and scale of linear regression; (0, 1) without y."""
    if y is None or y.numel() < 2:
        return 0.0, 1.0
    # computed in NumPy: data summaries are constants of the program, not operations a tracer (the
    # fast MCMC backend's graph recorder) should see
    values = np.asarray(y.detach().cpu().numpy(), dtype=float)
    sd = float(values.std())
    return float(values.mean()), sd if sd > 0 else 1.0


def _centre(X: torch.Tensor) -> torch.Tensor:
    return _summary(X.mean(0))


def _tensor(value):
    """Arrays passed around validation (e.g. new X for prediction) as tensors of the default dtype."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value, dtype=float), dtype=torch.get_default_dtype())


# ---- linear regression --------------------------------------------------------------------------------
def linear_regression(X: torch.Tensor, y: torch.Tensor | None = None, prior: str = "normal",
                      prior_scale: float = 1.0, noise: str = "normal", df: float = 4.0,
                      standardize: bool = False, intercept_scale: float | None = None,
                      sigma_scale: float | None = None, sigma: float | None = None) -> None:
    """Bayesian linear regression: y_i ~ Noise(intercept + coef . x_i, sigma).

    Args:
        X: predictors (N, D). y: outcomes (N,); ``None`` samples them (prior predictive).
        prior: coefficient prior, ``normal`` (ridge), ``laplace`` (lasso) or ``flat`` (very wide; also
            makes the intercept's prior very wide).
        prior_scale: the Normal's sd or the Laplace's scale b (per sd of x_d when ``standardize``).
        noise: ``normal``, ``laplace`` (robust, least absolute deviations) or ``student_t``; sigma is the
            noise distribution's scale parameter (the sd only for ``normal``).
        df: degrees of freedom of the Student-t noise.
        standardize: put the coefficient prior on the standardised scale (sites stay on the user's scale).
        intercept_scale: sd of the intercept's prior at the data's centre; default 2.5 sd(y).
        sigma_scale: scale of sigma's HalfCauchy prior; default sd(y).
        sigma: a known noise scale; when given, sigma is not a latent site (MAP is then exactly ridge/lasso).
    """
    if noise not in NOISES:
        raise ValueError(f"noise: must be one of {', '.join(NOISES)}; got {noise!r}")
    X, y = _tensor(X), _tensor(y)
    y_loc, y_scale = _data_scale(y)
    D = X.shape[-1]

    coef = pyro.sample("coef", _coef_prior(X, prior, prior_scale, standardize, y_scale, (D,)))
    centre_fit = y_loc - (coef * _centre(X)).sum(-1)
    intercept = pyro.sample("intercept", dist.Normal(centre_fit, _intercept_scale(prior, intercept_scale, y_scale)))
    if sigma is None:
        sigma = pyro.sample("sigma", dist.HalfCauchy(torch.tensor(sigma_scale if sigma_scale else y_scale)))

    with pyro.plate("N", X.shape[0]):
        mean = intercept + (X * coef).sum(-1)
        if noise == "normal":
            likelihood = dist.Normal(mean, sigma)
        elif noise == "laplace":
            likelihood = dist.Laplace(mean, sigma)
        else:
            likelihood = dist.StudentT(df, mean, sigma)
        pyro.sample("y", likelihood, obs=y)


def gaussian_posterior(X, y, sigma: float, prior_scale: float = 1.0, intercept_scale: float | None = None,
                       standardize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior of (intercept, coef) of `linear_regression` with a Normal prior and a known sigma.

    Everything is Gaussian, so the posterior is N(mean, cov) with precision Z'Z / sigma^2 + P, where
    Z = [1, X] and P holds the priors: 1/s^2 on each coefficient (s / sd(x_d) when standardised) and the
    intercept's prior on a . theta with a = (1, xbar). Its mean is the MAP: ridge regression with
    lambda = sigma^2 / s^2 and an unpenalised intercept (the intercept's prior term is zero at the optimum).

    Returns ``(mean, cov)`` over the vector ``(intercept, coef_1, ..., coef_D)``.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, d = X.shape
    y_loc, y_scale = float(y.mean()), float(y.std()) or 1.0
    s0 = 2.5 * y_scale if intercept_scale is None else float(intercept_scale)
    sd = X.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    coef_scale = prior_scale / sd if standardize else np.full(d, float(prior_scale))
    Z = np.column_stack([np.ones(n), X])
    a = np.concatenate([[1.0], X.mean(0)])
    precision = Z.T @ Z / sigma**2 + np.outer(a, a) / s0**2 + np.diag(np.concatenate([[0.0], coef_scale**-2.0]))
    rhs = Z.T @ y / sigma**2 + a * y_loc / s0**2
    cov = np.linalg.inv(precision)
    return np.linalg.solve(precision, rhs), cov


def _linear_default_data(seed: int = 0) -> dict:
    """N = 100, D = 4 standard-normal predictors, y = 1 + 1.5 x1 - 2 x2 + 0 x3 + 0.5 x4 + N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 4))
    y = LINEAR_TRUTH["intercept"] + X @ np.asarray(LINEAR_TRUTH["coef"]) + LINEAR_TRUTH["sigma"] * rng.normal(size=100)
    return {"X": X.astype(np.float32), "y": y.astype(np.float32)}


LINEAR_TRUTH = {"intercept": 1.0, "coef": [1.5, -2.0, 0.0, 0.5], "sigma": 1.0}


# ---- logistic regression ------------------------------------------------------------------------------
def logistic_regression(X: torch.Tensor, y: torch.Tensor | None = None, prior: str = "normal",
                        prior_scale: float = 1.0, standardize: bool = False,
                        intercept_scale: float | None = None) -> None:
    """Bayesian logistic regression: y_i ~ Bernoulli(sigmoid(intercept + coef . x_i)).

    Options as for `linear_regression`; scales are on the logit scale, and the intercept's default prior
    is Normal(0, 2.5) on the log-odds at the data's centre. With prior="normal" the MAP is scikit-learn's
    L2 ``LogisticRegression`` with C = prior_scale^2 (its intercept unpenalised: pass a large
    ``intercept_scale``); MLE is ``penalty=None``.
    """
    X, y = _tensor(X), _tensor(y)
    D = X.shape[-1]
    coef = pyro.sample("coef", _coef_prior(X, prior, prior_scale, standardize, 1.0, (D,)))
    centre_logit = -(coef * _centre(X)).sum(-1)
    intercept = pyro.sample("intercept", dist.Normal(centre_logit, _intercept_scale(prior, intercept_scale, 1.0)))

    with pyro.plate("N", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=intercept + (X * coef).sum(-1)), obs=y)


def _logistic_default_data(seed: int = 0) -> dict:
    """N = 200, D = 3 standard-normal predictors, log-odds = -0.5 + 2 x1 - 1 x2 + 0 x3."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 3))
    logits = LOGISTIC_TRUTH["intercept"] + X @ np.asarray(LOGISTIC_TRUTH["coef"])
    y = (rng.random(200) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return {"X": X.astype(np.float32), "y": y}


LOGISTIC_TRUTH = {"intercept": -0.5, "coef": [2.0, -1.0, 0.0]}


# ---- softmax regression -------------------------------------------------------------------------------
def softmax_regression(X: torch.Tensor, y: torch.Tensor | None = None, K: int | None = None,
                       prior: str = "normal", prior_scale: float = 1.0, standardize: bool = False,
                       intercept_scale: float | None = None) -> None:
    """Multinomial (softmax) regression: y_i ~ Categorical(softmax(intercept + x_i . coef)).

    One intercept and one coefficient column per class (the symmetric parameterisation). Adding the same
    constant to every class's intercept, or the same vector to every column of coef, leaves the
    probabilities unchanged: identifiability comes from the priors alone (no reference class), so
    ``flat`` is refused and MLE coefficients are determined only up to that shift (the predicted
    probabilities are unique). K defaults to max(y) + 1.
    """
    if prior == "flat":
        raise ValueError("prior: flat is not allowed for softmax_regression: the softmax is unchanged by a "
                         "shift common to all classes, so only the prior identifies the coefficients")
    X = _tensor(X)
    y = None if y is None else torch.as_tensor(y).long()
    problem = _classes_problem(y, K)
    if problem:
        raise ValueError(": ".join(problem))
    K = int(y.max()) + 1 if K is None else K
    D = X.shape[-1]
    coef = pyro.sample("coef", _coef_prior(X, prior, prior_scale, standardize, 1.0, (D, K)))
    centre_logits = -(_centre(X).unsqueeze(-1) * coef).sum(-2)
    s0 = _intercept_scale(prior, intercept_scale, 1.0)
    intercept = pyro.sample("intercept", dist.Normal(centre_logits, s0).to_event(1))

    with pyro.plate("N", X.shape[0]):
        logits = intercept + (X.unsqueeze(-1) * coef).sum(-2)
        pyro.sample("y", dist.Categorical(logits=logits), obs=y)


def class_probabilities(X, intercept, coef) -> np.ndarray:
    """Softmax regression's p(y = k | x) for parameters (K,) and (D, K): an (N, K) array.

    Parameters with leading draw dimensions give (..., N, K).
    """
    X = np.asarray(X, dtype=float)
    intercept = np.asarray(intercept, dtype=float)
    coef = np.asarray(coef, dtype=float)
    logits = intercept[..., None, :] + np.einsum("nd,...dk->...nk", X, coef)
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def _softmax_default_data(seed: int = 0) -> dict:
    """N = 300, D = 2, K = 3 classes drawn from a softmax with known intercepts and coefficients."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 2))
    p = class_probabilities(X, SOFTMAX_TRUTH["intercept"], SOFTMAX_TRUTH["coef"])
    y = np.array([rng.choice(3, p=row) for row in p])
    return {"X": X.astype(np.float32), "y": y.astype(np.int64)}


SOFTMAX_TRUTH = {"intercept": [0.5, 0.0, -0.5], "coef": [[2.0, -1.0, -1.0], [0.0, 1.5, -1.5]]}


# ---- registration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CheckedSpec(ModelSpec):
    """A spec whose validation also checks fields against each other and options, and fills in defaults
    that follow from the data (softmax's K). It runs before any tracing, so a problem is one `DataError`
    (raised inside a traced model, Pyro would re-wrap it)."""

    prepare: Callable[[dict], dict] | None = None

    def validate(self, data):
        out = super().validate(data)
        return self.prepare(out) if self.prepare is not None else out


def _prepare_regression(data: dict) -> dict:
    if data.get("standardize") and _standardize_problem(data["X"]):
        raise DataError("X", _standardize_problem(data["X"]))
    return data


def _prepare_softmax(data: dict) -> dict:
    data = _prepare_regression(data)
    problem = _classes_problem(data["y"], data.get("K"))
    if problem:
        raise DataError(*problem)
    if data.get("K") is None:  # fixed here, so that predictions for new X (without y) keep it
        data = {**data, "K": int(data["y"].max()) + 1}
    return data


def _options(natural: str, extra: dict | None = None, priors: tuple[str, ...] = PRIORS) -> dict:
    return {
        "prior": Option("normal", "coefficient prior: normal (ridge), laplace (lasso), flat (very wide)",
                        choices=priors),
        "prior_scale": Option(1.0, "sd of the Normal prior / scale b of the Laplace prior", low=1e-12),
        "standardize": Option(False, "put the coefficient prior on the standardised scale of X"),
        "intercept_scale": Option(None, f"sd of the intercept's prior at the data's centre (default {natural})",
                                  kind="float", low=1e-12),
        **(extra or {}),
    }


_X = Field("X", "real", (("N", "D"),), "predictors, one row per observation")
_DEMO = {"num_chains": 4, "num_samples": 500, "num_warmup": 300}
_DISPLAY = {"plate_index": {"N": "i"}, "labels": {"X": "x"}}

LINEAR = register(_CheckedSpec(
    name="linear_regression",
    model=linear_regression,
    guide=None,
    default_data=_linear_default_data,
    engines=("nuts", "hmc", "svi", "map", "mle"),
    description="Linear regression y_i ~ Normal(intercept + coef . x_i, sigma); ridge/lasso/flat priors, "
                "normal/laplace/student_t noise",
    fields=(_X, Field("y", "real", (("N",),), "outcomes")),
    options=_options("2.5 sd(y); flat: 1000 sd(y)", {
        "noise": Option("normal", "noise distribution", choices=NOISES),
        "df": Option(4.0, "degrees of freedom of the Student-t noise", low=1e-6),
        "sigma_scale": Option(None, "scale of sigma's HalfCauchy prior (default sd(y))", kind="float", low=1e-12),
        "sigma": Option(None, "a known noise scale: sigma is then fixed, not a latent site", kind="float",
                        low=1e-12),
    }),
    display=_DISPLAY,
    demo=_DEMO,
    prepare=_prepare_regression,
))

LOGISTIC = register(_CheckedSpec(
    name="logistic_regression",
    model=logistic_regression,
    guide=None,
    default_data=_logistic_default_data,
    engines=("nuts", "hmc", "svi", "map", "mle"),
    description="Logistic regression y_i ~ Bernoulli(sigmoid(intercept + coef . x_i))",
    fields=(_X, Field("y", "binary", (("N",),), "0/1 outcomes")),
    options=_options("2.5; flat: 1000"),
    display=_DISPLAY,
    demo=_DEMO,
    prepare=_prepare_regression,
))

SOFTMAX = register(_CheckedSpec(
    name="softmax_regression",
    model=softmax_regression,
    guide=None,
    default_data=_softmax_default_data,
    engines=("nuts", "hmc", "svi", "map", "mle"),
    description="Softmax regression y_i ~ Categorical(softmax(intercept + x_i . coef)), K classes",
    fields=(_X, Field("y", "category", (("N",),), "class labels 0..K-1")),
    options=_options("2.5", {"K": Option(None, "number of classes (default max(y) + 1)", kind="int", low=2)},
                     priors=("normal", "laplace")),
    display=_DISPLAY,
    demo=_DEMO,
    prepare=_prepare_softmax,
))
