"""How well a fitted VAE does: per-datum bounds on log p(x), a baseline, and pictures.

- `elbo_per_datum`: E_q[log p(x | z)] - KL(q(z | x) || p(z)) with the KL exact;
- `iwae_per_datum`: the importance-weighted bound with K samples, log p(x) >= IWAE_K >= ELBO (IWAE_1
  equals the ELBO in expectation);
- `bernoulli_baseline`: independent pixels, the factorised-Bernoulli model;
- `evaluate`: the three, on training and held-out data;
- `save_image_grids`: reconstructions and samples as PNG grids.

The fitted networks are the ones in Pyro's param store; `data` are the data and options of the fit
(``Posterior.data``).

Example:
    >>> from ppl_models.vae import digits, evaluation
    >>> train, test = digits.digits_split(seed=0)
    >>> round(float(evaluation.bernoulli_baseline(train, test).mean()), 2)
    -27.02
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
from torch.distributions import kl_divergence

from .._nets import write_png_grid
from ..data import as_tensor
from .model import SPEC, decoder_likelihood, latent_prior, vae, vae_guide
from .networks import decoder_net, encoder_net, image_side


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
    x = as_tensor(x)
    opts = SPEC.option_values(data, batch_size=0, beta=1.0, kl="sampled")
    out = []
    for start in range(0, len(x), chunk):
        logw = _log_weights(x[start:start + chunk], K, opts)
        out.append(torch.logsumexp(logw, 0) - math.log(K))
    return torch.cat(out).cpu().numpy()


def elbo_per_datum(data: Mapping[str, Any], x: Any, num_samples: int = 20) -> np.ndarray:
    """ELBO per datum, E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL exact and the expectation
    averaged over `num_samples` draws of z."""
    x = as_tensor(x)
    opts = SPEC.option_values(data, batch_size=0, beta=1.0, kl="sampled")
    with torch.no_grad():
        encoder = encoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        decoder = decoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        loc, scale = encoder(x)
        q = dist.Normal(loc, scale).to_event(1)
        kl = kl_divergence(q, latent_prior(opts["latent_dim"], x))
        z = q.rsample((num_samples,))
        rec = decoder_likelihood(decoder(z), opts["likelihood"], opts["x_scale"]).log_prob(x).mean(0)
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
    x = as_tensor(data["x"])
    opts = SPEC.option_values(data)
    side = image_side(x.shape[-1])
    torch.manual_seed(seed)
    with torch.no_grad():
        encoder = encoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        decoder = decoder_net(x.shape[-1], opts["latent_dim"], opts["hidden"], opts["net"])
        originals = x[:num]
        means = lambda out_: out_ if opts["likelihood"] == "normal" else decoder_likelihood(  # noqa: E731
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
