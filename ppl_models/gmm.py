"""Gaussian mixture model: K Normal components, Dirichlet weights, enumerated assignments.

Generative story (the course's Gaussian mixture; 1-D or D-dimensional data):

    weights ~ Dirichlet(concentration, ..., concentration)
    locs    ~ OrderedNormal(loc_mean, loc_sd)          # K iid Normal locations, sorted (see below)
    for k = 1..K:
        scales_k ~ HalfNormal(scale_sd)                 # (D,) per-component diagonal scales if x is (N, D)
    for i = 1..N:
        z_i ~ Categorical(weights)                      # enumerated: summed out, never sampled
        x_i ~ Normal(locs_{z_i}, scales_{z_i}^2)        # diagonal covariance diag(scales_{z_i}^2) if (N, D)

Label switching is broken by ordering: `locs` is the vector of K iid Normal(loc_mean, loc_sd) draws
sorted increasingly (by the first coordinate when D > 1). Its density is K! prod_k N(locs_k) on the
ordered set, the prior Stan's ``ordered[K] mu; mu ~ normal(m, s)`` gives; under the hood the sampler
works on ``locs_1`` and the log gaps, so every chain explores the same labelled mode and R-hat over
chains is meaningful. Because the components are ordered, `locs` is one K-vector site outside the K
plate; `scales` sit in it.

Multivariate data use per-component *diagonal* covariances diag(scales_k^2) (axis-aligned clusters); full
per-component covariance matrices are not offered.

Responsibilities gamma_ik = p(z_i = k | x_i) = w_k N(x_i | mu_k, s_k^2) / sum_j w_j N(x_i | mu_j, s_j^2)
come from `responsibilities`, by direct computation, for one parameter set or every posterior draw.

Example:
    >>> from ppl_models.gmm import default_data, responsibilities, TRUTH
    >>> data = default_data(seed=0)
    >>> data["x"].shape, data["K"]
    ((150,), 2)
    >>> r = responsibilities(data["x"], TRUTH["weights"], TRUTH["locs"], TRUTH["scales"])
    >>> r.shape, bool(abs(r.sum(-1) - 1).max() < 1e-12)
    ((150, 2), True)
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import OrderedTransform
from pyro.ops.indexing import Vindex
from scipy.special import logsumexp
from pyro.distributions import constraints
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import Transform

from .data import Field, Option
from .registry import ModelSpec, register

TRUTH = {"weights": np.array([0.4, 0.6]), "locs": np.array([-3.0, 3.0]), "scales": np.array([1.0, 0.7])}


# ---- the ordered prior on the locations --------------------------------------------------------------

class _FirstCoordinateOrdered(constraints.Constraint):
    """(K, D) matrices whose rows are sorted by their first coordinate."""

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        first = value[..., 0]
        return (first[..., 1:] > first[..., :-1]).all(-1) & torch.isfinite(value).flatten(-2).all(-1)


first_coordinate_ordered = _FirstCoordinateOrdered()


class _OrderFirstCoordinate(Transform):
    """Unconstrained (K, D) -> rows sorted by the first coordinate (OrderedTransform on column 0)."""

    domain = constraints.independent(constraints.real, 2)
    codomain = first_coordinate_ordered
    bijective = True

    def __eq__(self, other):
        return isinstance(other, _OrderFirstCoordinate)

    def _call(self, x):
        return torch.cat([OrderedTransform()(x[..., 0]).unsqueeze(-1), x[..., 1:]], dim=-1)

    def _inverse(self, y):
        return torch.cat([OrderedTransform().inv(y[..., 0]).unsqueeze(-1), y[..., 1:]], dim=-1)

    def log_abs_det_jacobian(self, x, y):
        return x[..., 1:, 0].sum(-1)


@biject_to.register(_FirstCoordinateOrdered)
@transform_to.register(_FirstCoordinateOrdered)
def _order_first_coordinate(constraint):
    return _OrderFirstCoordinate()


class OrderedNormal(dist.TorchDistribution):
    """K iid Normal(loc, scale) draws (vectors of size D when `dim` is given) sorted increasingly.

    Density K! prod_k N(value_k | loc, scale) on the ordered set (sorted by the first coordinate when
    `dim` is given); event shape (K,) or (K, dim).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc: float, scale: float, K: int, dim: int | None = None, validate_args=None):
        self.loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        self.scale = torch.as_tensor(scale, dtype=torch.get_default_dtype())
        self.K, self.dim = int(K), dim
        event_shape = (self.K,) if dim is None else (self.K, int(dim))
        super().__init__(torch.Size(), torch.Size(event_shape), validate_args=validate_args)

    @property
    def support(self):
        return constraints.ordered_vector if self.dim is None else first_coordinate_ordered

    def expand(self, batch_shape, _instance=None):
        """Independent copies over `batch_shape` (under a plate: the chains of a batched sampler)."""
        new = self._get_checked_instance(OrderedNormal, _instance)
        new.loc, new.scale, new.K, new.dim = self.loc, self.scale, self.K, self.dim
        super(OrderedNormal, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            draws = self.loc + self.scale * torch.randn(self._extended_shape(sample_shape))
            if self.dim is None:
                return draws.sort(dim=-1).values
            order = draws[..., 0].argsort(dim=-1)
            return torch.gather(draws, -2, order.unsqueeze(-1).expand(draws.shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        lp = dist.Normal(self.loc, self.scale).log_prob(value)
        lp = lp.sum(-1) if self.dim is None else lp.sum((-2, -1))
        return lp + math.lgamma(self.K + 1)


# ---- the model ---------------------------------------------------------------------------------------

def gmm(x: torch.Tensor | None = None, K: int = 2, concentration: float = 1.0, loc_mean: float = 0.0,
        loc_sd: float = 10.0, scale_sd: float = 5.0, N: int = 100, D: int = 1) -> None:
    """Gaussian mixture. `x` is (N,) or (N, D); `None` samples N points (D = 1 gives shape (N,))."""
    num_points = x.shape[0] if x is not None else N
    dim = (x.shape[1] if x.dim() == 2 else None) if x is not None else (D if D > 1 else None)
    # each global site carries a suggested start for optimisers (MAP, MLE, SVI): see `starting_point`
    weights = pyro.sample("weights", dist.Dirichlet(concentration * torch.ones(K)), infer=_start(x, K, "weights"))
    locs = pyro.sample("locs", OrderedNormal(loc_mean, loc_sd, K, dim), infer=_start(x, K, "locs"))
    with pyro.plate("K", K):
        scale_prior = dist.HalfNormal(scale_sd * torch.ones(()))
        scales = pyro.sample("scales", scale_prior if dim is None else scale_prior.expand([dim]).to_event(1),
                             infer=_start(x, K, "scales"))
    with pyro.plate("N", num_points):
        z = pyro.sample("z", dist.Categorical(weights))
        if dim is None:
            # locs_{z_i}, scales_{z_i}: the component axis leaves the batch dims, so draws and enumeration broadcast
            pyro.sample("x", dist.Normal(Vindex(locs)[..., z], Vindex(scales.unsqueeze(-2))[..., z]), obs=x)
        else:
            pyro.sample("x", dist.Normal(Vindex(locs)[..., z, :], Vindex(scales.unsqueeze(-3))[..., z, :])
                        .to_event(1), obs=x)


_KMEANS_CACHE: dict = {}


def starting_point(x: torch.Tensor, K: int, iterations: int = 25) -> dict[str, torch.Tensor]:
    """A start for optimisers from the data: scikit-learn's k-means (k-means++ seeding from a fixed seed)
    gives ``locs`` (the centres sorted by the first coordinate, first coordinates made strictly
    increasing: inside the ordered prior's support), ``scales`` (each cluster's sd per coordinate) and
    ``weights`` (cluster proportions, smoothed). Shapes as the model's sites: (K,) or (K, D).

    Why: the locations are ordered, and an optimiser cannot move one component past another. From Pyro's
    default start (every component near 0) MAP on 2-D data pushed two components against each other
    until their first coordinates were equal, outside the support (a raw ValueError), or stopped at a wrong
    mode. Started at the data's clusters, no component needs to pass another, and L-BFGS's first steps are
    small (started at good locations but default scales, its first line search overshot a scale to 0).
    """
    cached = _KMEANS_CACHE.get("last")
    if cached is not None and cached[0] is x and cached[1] == K:  # (the cache holds x: its id stays unique)
        return cached[2]
    from sklearn.cluster import KMeans

    data = torch.as_tensor(x).detach()
    arr = data.double().reshape(data.shape[0], -1).numpy()
    n = arr.shape[0]
    fitted = KMeans(n_clusters=min(K, len(np.unique(arr, axis=0))), n_init=1, max_iter=iterations,
                    random_state=0).fit(arr)
    centres = np.concatenate([fitted.cluster_centers_, np.repeat(arr.mean(0, keepdims=True),
                                                                 K - fitted.n_clusters, axis=0)])
    order = np.argsort(centres[:, 0], kind="stable")
    label = np.argsort(order)[fitted.labels_]
    centres = centres[order]
    overall = arr.std(0) if n > 1 else np.ones(arr.shape[1])
    overall = np.where(overall > 0, overall, 1.0)
    for k in range(1, K):  # strictly increasing first coordinates (identical centres, fewer points than K)
        centres[k, 0] = max(centres[k, 0], centres[k - 1, 0] + 1e-3 * overall[0])
    scales = np.array([arr[label == k].std(0) if (label == k).sum() > 1 else overall for k in range(K)])
    scales = np.maximum(scales, 1e-2 * overall)
    counts = np.bincount(label, minlength=K)
    weights = (counts + 1.0) / (n + K)
    dtype = torch.get_default_dtype()
    one_d = data.dim() == 1
    out = {"locs": torch.as_tensor(centres[:, 0] if one_d else centres, dtype=dtype),
           "scales": torch.as_tensor(scales[:, 0] if one_d else scales, dtype=dtype),
           "weights": torch.as_tensor(weights, dtype=dtype)}
    _KMEANS_CACHE["last"] = (x, K, out)
    return out


def _start(x: torch.Tensor | None, K: int, site: str) -> dict:
    """The ``infer`` entry suggesting `site`'s start (computed only when an optimiser asks for it)."""
    return {"init": functools.partial(_start_value, x, K, site)} if x is not None else {}


def _start_value(x: torch.Tensor, K: int, site: str) -> torch.Tensor:
    return starting_point(x, K)[site]


def responsibilities(x, weights, locs, scales) -> np.ndarray:
    """gamma_ik = w_k N(x_i | mu_k, s_k^2) / sum_j w_j N(x_i | mu_j, s_j^2), computed directly.

    Args:
        x: (N,) or (N, D) data.
        weights: (..., K); locs, scales: (..., K) for 1-D data, (..., K, D) for D-dimensional data
            (diagonal covariances). Leading dims (e.g. chain, draw of `Posterior.samples`) broadcast.

    Returns:
        (..., N, K) array whose rows sum to one.
    """
    x = np.asarray(x, dtype=float)
    w, mu, s = (np.asarray(a, dtype=float) for a in (weights, locs, scales))
    if x.ndim == 1:
        xk = x[:, None]                                     # (N, 1) against (..., 1, K)
        mu, s = mu[..., None, :], s[..., None, :]
        log_pdf = -0.5 * ((xk - mu) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    else:
        xk = x[:, None, :]                                  # (N, 1, D) against (..., 1, K, D)
        mu, s = mu[..., None, :, :], s[..., None, :, :]
        log_pdf = (-0.5 * ((xk - mu) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)).sum(-1)
    log_joint = np.log(w)[..., None, :] + log_pdf
    return np.exp(log_joint - logsumexp(log_joint, axis=-1, keepdims=True))


def default_data(seed: int = 0) -> dict:
    """150 points from two well-separated 1-D components: TRUTH's weights, locs and scales."""
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=150, p=TRUTH["weights"])
    x = rng.normal(TRUTH["locs"][z], TRUTH["scales"][z])
    return {"x": x.astype(np.float32), "K": 2}


def multivariate_data(seed: int = 0, n: int = 200) -> tuple[dict, dict]:
    """(data, truth): n points in 2-D from three well-separated diagonal-covariance components."""
    rng = np.random.default_rng(seed)
    truth = {"weights": np.array([0.35, 0.4, 0.25]),
             "locs": np.array([[-5.0, 2.0], [0.0, -3.0], [5.0, 3.0]]),
             "scales": np.array([[1.0, 0.5], [0.7, 0.7], [0.5, 1.2]])}
    z = rng.choice(3, size=n, p=truth["weights"])
    x = rng.normal(truth["locs"][z], truth["scales"][z])
    return {"x": x.astype(np.float32), "K": 3}, truth


SPEC = register(
    ModelSpec(
        name="gmm",
        model=gmm,
        guide=None,
        default_data=default_data,
        engines=("nuts", "hmc", "svi", "map", "mle"),
        description="Gaussian mixture: weights ~ Dir, ordered locs, HalfNormal scales, z_i ~ Cat enumerated, "
                    "x_i ~ N(locs_z, scales_z^2); 1-D or diagonal multivariate",
        fields=(Field("x", "real", (("N",), ("N", "D")), "data points, (N,) or (N, D)"),),
        options={
            "K": Option(2, "number of components", low=1),
            "concentration": Option(1.0, "symmetric Dirichlet concentration of the weights", low=1e-6),
            "loc_mean": Option(0.0, "mean of the Normal prior of each location (before ordering)"),
            "loc_sd": Option(10.0, "sd of the Normal prior of each location (before ordering)", low=1e-9),
            "scale_sd": Option(5.0, "HalfNormal prior scale of each component scale", low=1e-9),
            "N": Option(100, "number of points to sample when x is None", low=1),
            "D": Option(1, "dimension of the points to sample when x is None", low=1),
        },
        display={"labels": {"weights": "pi", "locs": "mu", "scales": "sigma"}},
        demo={"num_chains": 4, "num_samples": 500, "num_warmup": 300},
    )
)
