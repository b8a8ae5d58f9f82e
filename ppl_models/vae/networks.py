"""The VAE's networks: the decoder f_theta (model parameters) and the encoder (mu_phi, sigma_phi) (guide
parameters), each an MLP (``net="mlp"``) or a small convolutional network for square images
(``net="conv"``). `decoder_net` and `encoder_net` return them registered with Pyro's param store.

Example:
    >>> import torch
    >>> from ppl_models.vae.networks import Decoder, Encoder
    >>> loc, scale = Encoder(64, (32,), 2, "conv")(torch.rand(5, 64))
    >>> loc.shape, Decoder(64, (32,), 2, "conv")(loc).shape
    (torch.Size([5, 2]), torch.Size([5, 64]))
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._nets import bound_module, hidden_sizes, mlp
from ..data import DataError

NETS = ("mlp", "conv")


def image_side(dim: int) -> int:
    """The side of a square image of `dim` pixels; `DataError` (naming the option `net`: only "conv" needs
    it) if `dim` is not a square."""
    side = int(round(math.sqrt(dim)))
    if side * side != dim:
        raise DataError("net", f"'conv' needs square images, but x has D = {dim} pixels (not a square)")
    return side


class Encoder(nn.Module):
    """x (..., D) -> (loc, scale) of q(z | x), each (..., latent_dim)."""

    def __init__(self, dim: int, hidden: tuple[int, ...], latent_dim: int, net: str):
        super().__init__()
        self.net = net
        if net == "conv":
            self.side = image_side(dim)
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


class Decoder(nn.Module):
    """z (..., latent_dim) -> the decoder output f_theta(z) (..., D): logits or means."""

    def __init__(self, dim: int, hidden: tuple[int, ...], latent_dim: int, net: str):
        super().__init__()
        self.net = net
        self.dim = dim
        if net == "conv":
            self.side = image_side(dim)
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


def decoder_net(dim: int, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp") -> nn.Module:
    """The decoder f_theta, registered with Pyro as ``vae_decoder`` (its weights are model parameters)."""
    sizes = hidden_sizes(hidden)
    key = (dim, latent_dim, sizes, net)
    return bound_module("vae_decoder", key, lambda: Decoder(dim, sizes, latent_dim, net))


def encoder_net(dim: int, latent_dim: int = 8, hidden: Any = (256,), net: str = "mlp") -> nn.Module:
    """The encoder (mu_phi, sigma_phi), registered with Pyro as ``vae_encoder`` (guide parameters)."""
    sizes = hidden_sizes(hidden)
    key = (dim, latent_dim, sizes, net)
    return bound_module("vae_encoder", key, lambda: Encoder(dim, sizes, latent_dim, net))
