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

Evaluation: `elbo_per_datum`, `iwae_per_datum` (the importance-weighted bound with K samples,
log p(x) >= IWAE_K >= ELBO; IWAE_1 equals the ELBO in expectation), `bernoulli_baseline` (independent
pixels, the factorised-Bernoulli model) and `evaluate` report them; `save_image_grids` writes
reconstructions and samples as PNG grids.

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

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.distributions import kl_divergence

from ._nets import analytic_kl_factor, bound_module, hidden_sizes, mlp, write_png_grid
from .data import DataError, Field, Option
from .registry import ModelSpec, register

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal")
NETS = ("mlp", "conv")


# ---- networks -----------------------------------------------------------------------------------------
def _image_side(dim: int) -> int:
    side = int(round(math.sqrt(dim)))
    if side * side != dim:
        raise DataError("net", f"'conv' needs square images, but x has D = {dim} pixels (not a square)")
    return side


class _Encoder(nn.Module):
    """x (..., D) -> (loc, scale) of q(z | x), each (..., latent_dim)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], latent_dim: int, net: str):
        super().__init__()
        self.net = net
        if net == "conv":
            self.side = _image_side(dim)
            half = -(-self.side // 2)
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                *mlp((32 * half * half,) + hidden), nn.ReLU())
        else:
            self.body = nn.Sequential(*mlp((dim,) + hidden), nn.ReLU())
        self.loc = nn.Linear(hidden[-1], latent_dim)
        self.scale = nn.Linear(hidden[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        if self.net == "conv":
            flat = flat.reshape(-1, 1, self.side, self.side)
        h = self.body(flat)
        loc = self.loc(h)
        scale = nn.functional.softplus(self.scale(h)) + 1e-4
        return loc.reshape(lead + loc.shape[-1:]), scale.reshape(lead + scale.shape[-1:])


class _Decoder(nn.Module):
    """z (..., latent_dim) -> the decoder output f_theta(z) (..., D): logits or means."""

    def __init__(self, dim: int, hidden: tuple[int, ...], latent_dim: int, net: str):
        super().__init__()
        self.net = net
        self.dim = dim
        if net == "conv":
            self.side = _image_side(dim)
            self.half = -(-self.side // 2)
            self.body = nn.Sequential(
                *mlp((latent_dim,) + hidden + (32 * self.half * self.half,)), nn.ReLU(),
                nn.Unflatten(1, (32, self.half, self.half)),
                nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(16, 1, 3, padding=1))
        else:
            self.body = mlp((latent_dim,) + tuple(reversed(hidden)) + (dim,))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1]))
        if self.net == "conv":
            out = out[:, 0, : self.side, : self.side]
        return out.reshape(lead + (self.dim,))


def _check(net: str, likelihood: str, kl: str) -> None:
    if net not in NETS:
        raise DataError("net", f"must be one of {', '.join(NETS)}; got {net!r}")
    if likelihood not in LIKELIHOODS:
        raise DataError("likelihood", f"must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
    if kl not in ("analytic", "sampled"):
        raise DataError("kl", f"must be 'analytic' or 'sampled'; got {kl!r}")


def decoder_net(dim: int, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp") -> nn.Module:
    """The decoder f_theta, registered with Pyro as ``vae_decoder`` (its weights are model parameters)."""
    sizes = hidden_sizes(hidden)
    key = (dim, latent_dim, sizes, net)
    return bound_module("vae_decoder", key, lambda: _Decoder(dim, sizes, latent_dim, net))


def encoder_net(dim: int, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp") -> nn.Module:
    """The encoder (mu_phi, sigma_phi), registered with Pyro as ``vae_encoder`` (guide parameters)."""
    sizes = hidden_sizes(hidden)
    key = (dim, latent_dim, sizes, net)
    return bound_module("vae_encoder", key, lambda: _Encoder(dim, sizes, latent_dim, net))


def _likelihood(out: torch.Tensor, likelihood: str, x_scale: float) -> dist.Distribution:
    """p_theta(x | z) with pixels as the event. Grey-level x under 'bernoulli' is the cross-entropy, so
    support checks are off for it (the [0, 1] range is checked on the data field instead)."""
    if likelihood == "bernoulli":
        base = dist.Bernoulli(logits=out, validate_args=False)
    elif likelihood == "continuous_bernoulli":
        base = dist.ContinuousBernoulli(logits=out.clamp(-15, 15), validate_args=False)
    else:
        base = dist.Normal(out, x_scale)
    return dist.Independent(base, 1, validate_args=False)


def _prior(latent_dim: int, like: torch.Tensor | None = None) -> dist.Distribution:
    zero = torch.zeros(latent_dim) if like is None else like.new_zeros(latent_dim)
    return dist.Normal(zero, 1.0).to_event(1)


def _batch(n: int, batch_size: int | None) -> int | None:
    """subsample_size of the data plate: None (full batch) for 0, None or a size of at least n."""
    return None if not batch_size or batch_size >= n else int(batch_size)


# ---- model and guide ----------------------------------------------------------------------------------
def vae(x: torch.Tensor | None = None, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp",
        likelihood: str = "bernoulli", x_scale: float = 0.1, beta: float = 1.0, kl: str = "analytic",
        batch_size: int = 0, N: int = 16, D: int = 64) -> torch.Tensor:
    """The VAE's generative model. `x` (N, D) in [0, 1]; pass `None` to sample N images of D pixels."""
    _check(net, likelihood, kl)
    n, d = (x.shape[0], x.shape[-1]) if x is not None else (N, D)
    decoder = decoder_net(d, latent_dim, hidden, net)                 # theta: learned point parameters
    with pyro.plate("N", n, subsample_size=_batch(n, batch_size)) as idx:
        with poutine.scale(scale=beta):
            z = pyro.sample("z", _prior(latent_dim, x))
        return pyro.sample("x", _likelihood(decoder(z), likelihood, x_scale),
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
    with pyro.plate("N", n, subsample_size=_batch(n, batch_size)) as idx:
        loc, scale = encoder(x[idx])
        q = dist.Normal(loc, scale).to_event(1)
        with poutine.scale(scale=beta):
            z = pyro.sample("z", q)
            if kl == "analytic":
                p = _prior(latent_dim, x)
                analytic_kl_factor("z_kl", q, p, z)
        return z


# ---- data -----------------------------------------------------------------------------------------------
def digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1797 images) scaled to [0, 1], split at random into (train, held-out)."""
    from sklearn.datasets import load_digits  # ships its data; imported here so the zoo stays light

    images = load_digits().data.astype(np.float32) / 16.0
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    return images[order[n_test:]], images[order[:n_test]]


def default_data(seed: int = 0) -> dict:
    """The training part of the digits split (1438 images of 64 pixels), mini-batches of 128."""
    train, _ = digits_split(seed)
    return {"x": train, "batch_size": 128}


# ---- evaluation -----------------------------------------------------------------------------------------
def _options(data: Mapping[str, Any], **overrides: Any) -> dict:
    opts = {k: option.default for k, option in SPEC.options.items()}
    opts.update({k: v for k, v in data.items() if k in SPEC.options})
    opts.update(overrides)
    return opts


def _as_tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.get_default_dtype())


def _log_weights(x: torch.Tensor, K: int, opts: dict) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) for K guide draws per datum: (K, N)."""
    with torch.no_grad(), pyro.plate("_particles", K, dim=-2):
        guide_trace = poutine.trace(vae_guide).get_trace(x=x, **opts)
        model_trace = poutine.trace(poutine.replay(vae, trace=guide_trace)).get_trace(x=x, **opts)
    z = guide_trace.nodes["z"]["value"]
    return (model_trace.nodes["z"]["fn"].log_prob(z) + model_trace.nodes["x"]["fn"].log_prob(x)
            - guide_trace.nodes["z"]["fn"].log_prob(z))


def iwae_per_datum(data: Mapping[str, Any], x: Any, K: int = 100, chunk: int = 256) -> np.ndarray:
    """The importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q(z | x), per datum.

    `data` holds the model options the networks were fitted with (``Posterior.data`` works); the
    networks are the ones in Pyro's param store. IWAE_K <= log p(x), it grows with K, and IWAE_1 is a
    one-sample estimate of the ELBO (with beta = 1).
    """
    x = _as_tensor(x)
    opts = _options(data, batch_size=0, beta=1.0, kl="sampled")
    out = []
    for start in range(0, len(x), chunk):
        logw = _log_weights(x[start:start + chunk], K, opts)
        out.append(torch.logsumexp(logw, 0) - math.log(K))
    return torch.cat(out).cpu().numpy()


def elbo_per_datum(data: Mapping[str, Any], x: Any, num_samples: int = 20) -> np.ndarray:
    """ELBO per datum, E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL exact and the expectation
    averaged over `num_samples` draws of z."""
    x = _as_tensor(x)
    opts = _options(data, batch_size=0, beta=1.0, kl="sampled")
    with torch.no_grad():
        encoder = encoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        decoder = decoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        loc, scale = encoder(x)
        q = dist.Normal(loc, scale).to_event(1)
        kl = kl_divergence(q, _prior(opts["latent_dim"], x))
        z = q.rsample((num_samples,))
        rec = _likelihood(decoder(z), opts["likelihood"], opts["x_scale"]).log_prob(x).mean(0)
    return (rec - kl).cpu().numpy()


def bernoulli_baseline(train: Any, test: Any) -> np.ndarray:
    """Held-out log-likelihood per datum of independent pixels, p_d = (sum_i x_id + 1) / (N + 2) fitted on
    `train`: the factorised-Bernoulli model, scored with the same cross-entropy as the VAE."""
    train, test = np.asarray(train, dtype=float), np.asarray(test, dtype=float)
    p = (train.sum(0) + 1.0) / (len(train) + 2.0)
    return (test * np.log(p) + (1 - test) * np.log1p(-p)).sum(1)


def evaluate(data: Mapping[str, Any], x_test: Any, K: int = 100, seed: int = 0) -> dict[str, float]:
    """Per-datum training and held-out ELBO, held-out IWAE_K, and the factorised-Bernoulli baseline."""
    pyro.set_rng_seed(seed)
    x_train = data["x"]
    report = {
        "train_elbo": float(elbo_per_datum(data, x_train).mean()),
        "test_elbo": float(elbo_per_datum(data, x_test).mean()),
        f"test_iwae_{K}": float(iwae_per_datum(data, x_test, K=K).mean()),
    }
    if data.get("likelihood", "bernoulli") == "bernoulli":
        report["test_bernoulli_baseline"] = float(bernoulli_baseline(x_train, x_test).mean())
    return report


def save_image_grids(out_dir: str | Path, data: Mapping[str, Any], num: int = 32, seed: int = 0,
                     columns: int = 16) -> dict[str, Path]:
    """Write ``vae_reconstructions.png`` (rows of originals above their reconstructions, the decoder mean
    at the encoder mean) and ``vae_samples.png`` (decoder means at z ~ p(z)) into `out_dir`.

    Needs square images; `data` are the fit's data and options (``Posterior.data``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = _as_tensor(data["x"])
    opts = _options(data)
    side = _image_side(x.shape[-1])
    torch.manual_seed(seed)
    with torch.no_grad():
        encoder = encoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        decoder = decoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        originals = x[:num]
        means = lambda out_: out_ if opts["likelihood"] == "normal" else _likelihood(  # noqa: E731
            out_, opts["likelihood"], opts["x_scale"]).base_dist.mean
        recon = means(decoder(encoder(originals)[0]))
        samples = means(decoder(torch.randn(num, opts["latent_dim"])))
    pairs = []
    for start in range(0, len(originals), columns):
        pairs += [originals[start:start + columns], recon[start:start + columns]]
    images = torch.cat(pairs).clamp(0, 1).reshape(-1, side, side).cpu().numpy()
    return {
        "reconstructions": write_png_grid(out / "vae_reconstructions.png", images, columns),
        "samples": write_png_grid(out / "vae_samples.png",
                                  samples.clamp(0, 1).reshape(-1, side, side).cpu().numpy(), columns),
    }


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
