"""The variational auto-encoder: z_i ~ N(0, I), x_i ~ p_theta(x | z_i), an amortized encoder guide.

The model lives in four modules; this package exports the public names of all of them:

- `model`: the generative story (its docstring), the Pyro program `vae`, its guide `vae_guide`, the
  distributions they use (`latent_prior`, `decoder_likelihood`) and the registration `SPEC`;
- `networks`: the encoder and decoder (`Encoder`, `Decoder`, `encoder_net`, `decoder_net`);
- `digits`: the data (`digits_split`, `default_data`);
- `evaluation`: `elbo_per_datum`, `iwae_per_datum`, `bernoulli_baseline`, `evaluate`, `save_image_grids`.

Example:
    >>> from ppl_models import vae
    >>> train, test = vae.digits_split(seed=0)
    >>> vae.SPEC.validate({"x": train[:10]})["x"].shape
    torch.Size([10, 64])
"""

from .digits import default_data, digits_split
from .evaluation import bernoulli_baseline, elbo_per_datum, evaluate, iwae_per_datum, save_image_grids
from .model import LIKELIHOODS, SPEC, decoder_likelihood, latent_prior, vae, vae_guide
from .networks import NETS, Decoder, Encoder, decoder_net, encoder_net, image_side

__all__ = [
    "SPEC", "vae", "vae_guide", "latent_prior", "decoder_likelihood", "LIKELIHOODS",
    "Encoder", "Decoder", "encoder_net", "decoder_net", "image_side", "NETS",
    "digits_split", "default_data",
    "elbo_per_datum", "iwae_per_datum", "bernoulli_baseline", "evaluate", "save_image_grids",
]
