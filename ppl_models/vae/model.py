"""The variational auto-encoder: a deep latent-variable model with an amortized guide.

Generative story (the course's VAE; theta are the decoder weights, learned point parameters):

    for i = 1..N:
        z_i ~ Normal(0, I_latent_dim)
        x_i ~ p_theta(x | z_i)        Bernoulli(sigmoid(f_theta(z_i))) per pixel (default),
                                      ContinuousBernoulli, or Normal(f_theta(z_i), x_scale^2)

Inference (the guide, phi are the encoder weights): q_phi(z_i | x_i) = Normal(mu_phi(x_i),
diag sigma_phi(x_i)^2), with the reparameterisation z = mu + sigma * eps, trained by maximising

    ELBO = sum_i E_q[log p_theta(x_i | z_i)] - beta * KL(q_phi(z_i | x_i) || p(z_i))

with `beta` = 1 the ELBO proper (beta != 1 is the beta-VAE). The KL term is analytic by default
(``kl="analytic"``) or a one-sample Monte-Carlo term (``kl="sampled"``). With ``batch_size`` set, the
plate over data subsamples a mini-batch per step and scales it by N / batch_size, so a step costs the
same however large N is.

With the default ``likelihood="bernoulli"`` and grey levels in [0, 1] the reconstruction term is the
binary cross-entropy (the usual VAE loss; a density only for binary x). ``"continuous_bernoulli"`` is
the normalised density on [0, 1]; ``"normal"`` a Gaussian with fixed scale ``x_scale``.

Beside this file: `networks` (the encoder and decoder), `digits` (the data: scikit-learn's 8x8 digits and
their train/held-out split) and `evaluation`: `elbo_per_datum`, `iwae_per_datum` (the importance-weighted
bound with K samples, log p(x) >= IWAE_K >= ELBO; IWAE_1 equals the ELBO in expectation),
`bernoulli_baseline` (independent pixels, the factorised-Bernoulli model) and `evaluate` report them;
`save_image_grids` writes reconstructions and samples as PNG grids. The package `ppl_models.vae` exports
the public names of all four.

Example:
    >>> from inference import fit                                            # doctest: +SKIP
    >>> from ppl_models import vae
    >>> train, test = vae.digits_split(seed=0)
    >>> post = fit("vae", data={"x": train, "batch_size": 128}, method="svi",  # doctest: +SKIP
    ...            num_steps=2000, num_samples=50)
    >>> vae.evaluate(post.data, test)["test_elbo"]                            # doctest: +SKIP
    >>> vae.save_image_grids("run", post.data)                               # doctest: +SKIP
"""


from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from .._nets import analytic_kl_factor, subsample_size
from ..data import DataError, Field, Option
from ..registry import ModelSpec, register
from .digits import default_data
from .networks import NETS, decoder_net, encoder_net

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")


def vae(x: torch.Tensor | None = None, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp",
        likelihood: str = "bernoulli", x_scale: float = 0.1, beta: float = 1.0, kl: str = "analytic",
        batch_size: int = 0, N: int = 16, D: int = 64) -> torch.Tensor:
    """The VAE's generative model. `x` (N, D) in [0, 1]; pass `None` to sample N images of D pixels."""
    _check(net, likelihood, kl)
    n, d = (x.shape[0], x.shape[-1]) if x is not None else (N, D)
    decoder = decoder_net(d, latent_dim, hidden, net)                 # theta: learned point parameters
    with pyro.plate("N", n, subsample_size=subsample_size(n, batch_size)) as idx:
        with poutine.scale(scale=beta):
            z = pyro.sample("z", latent_prior(latent_dim, x))
        return pyro.sample("x", decoder_likelihood(decoder(z), likelihood, x_scale),
                           obs=None if x is None else x[idx])


def vae_guide(x: torch.Tensor | None = None, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp",
              likelihood: str = "bernoulli", x_scale: float = 0.1, beta: float = 1.0, kl: str = "analytic",
              batch_size: int = 0, N: int = 16, D: int = 64) -> torch.Tensor:
    """The amortized guide q_phi(z_i | x_i) = Normal(mu_phi(x_i), diag sigma_phi(x_i)^2).

    With ``kl="analytic"`` it adds the factor KL(q || p) - (log q(z) - log p(z)): zero in expectation, it
    turns the sampled KL of the ELBO estimator into the exact one while the model stays the plain
    generative program. It removes the KL's sampling noise, which dominates early in training; at
    trained networks the sampled estimator can be the quieter one (its KL and reconstruction noise
    partly cancel; notebooks/05_vae.ipynb measures both).
    """
    _check(net, likelihood, kl)
    if x is None:
        raise DataError("x", "the guide q(z | x) needs data")
    n = x.shape[0]
    encoder = encoder_net(x.shape[-1], latent_dim, hidden, net)       # phi
    with pyro.plate("N", n, subsample_size=subsample_size(n, batch_size)) as idx:
        loc, scale = encoder(x[idx])
        q = dist.Normal(loc, scale).to_event(1)
        with poutine.scale(scale=beta):
            z = pyro.sample("z", q)
            if kl == "analytic":
                p = latent_prior(latent_dim, x)
                analytic_kl_factor("z_kl", q, p, z)
        return z


# ---- the distributions of the story ---------------------------------------------------------------
def decoder_likelihood(out: torch.Tensor, likelihood: str, x_scale: float) -> dist.Distribution:
    """p_theta(x | z) from the decoder output `out` = f_theta(z), with pixels as the event. Grey-level x
    under 'bernoulli' is the cross-entropy, so support checks are off for it (the [0, 1] range is checked
    on the data field instead)."""
    if likelihood == "bernoulli":
        base = dist.Bernoulli(logits=out, validate_args=False)
    elif likelihood == "continuous_bernoulli":
        base = dist.ContinuousBernoulli(logits=out.clamp(-15, 15), validate_args=False)
    else:
        base = dist.Normal(out, x_scale)
    return dist.Independent(base, 1, validate_args=False)


def latent_prior(latent_dim: int, like: torch.Tensor | None = None) -> dist.Distribution:
    """p(z) = Normal(0, I_latent_dim), in the dtype and on the device of `like` when given."""
    zero = torch.zeros(latent_dim) if like is None else like.new_zeros(latent_dim)
    return dist.Normal(zero, 1.0).to_event(1)


def _check(net: str, likelihood: str, kl: str) -> None:
    if net not in NETS:
        raise DataError("net", f"must be one of {', '.join(NETS)}; got {net!r}")
    if likelihood not in LIKELIHOODS:
        raise DataError("likelihood", f"must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
    if kl not in ("analytic", "sampled"):
        raise DataError("kl", f"must be 'analytic' or 'sampled'; got {kl!r}")


SPEC = register(
    ModelSpec(
        name="vae",
        model=vae,
        guide=vae_guide,
        default_data=default_data,
        engines=("svi",),
        demo={"num_steps": 800, "num_samples": 100},  # a quick look for `ppl demo`; fit() defaults train fully
        description="Variational auto-encoder: z_i ~ N(0, I), x_i ~ p_theta(x | z_i), amortized encoder guide",
        fields=(Field("x", "unit", (("N", "D"),), "data points in [0, 1], one per row (e.g. images)"),),
        options={
            "latent_dim": Option(8, "size of the latent z", low=1),
            "hidden": Option((256,), "hidden layer widths of encoder and decoder (int or list)", kind="any"),
            "net": Option("mlp", "network family: 'mlp' or 'conv' (square images)", choices=NETS),
            "likelihood": Option("bernoulli", "p(x | z): bernoulli, continuous_bernoulli or normal",
                                 choices=LIKELIHOODS),
            "x_scale": Option(0.1, "standard deviation of the normal likelihood", low=1e-6),
            "beta": Option(1.0, "weight of the KL term (beta-VAE); 1 is the ELBO", low=0.0),
            "kl": Option("analytic", "KL term: 'analytic' (exact) or 'sampled' (one draw)",
                         choices=("analytic", "sampled")),
            "batch_size": Option(0, "mini-batch size of the data plate (0: full batch)", low=0),
            "N": Option(16, "number of data points to sample when x is None", low=1),
            "D": Option(64, "pixels per data point when x is None", low=1),
        },
        display={"labels": {"vae_encoder": "phi", "vae_decoder": "theta"}},
    )
)
