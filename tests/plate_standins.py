"""Stand-in Pyro programs for the plate-diagram tests, written the way the catalogue and the course write
the models (same site names, same stories), so that the golden tests do not depend on other branches.

Not a test module (no ``test_`` prefix): `tests/test_plates*.py` import it.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


def coin_mixture(flips=None, K: int = 2, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, N: int = 10):
    """GenerateTosses: theta_k ~ Beta(alpha, beta); pi ~ Dir(gamma); z_j ~ Cat(pi); x_j ~ Ber(theta_{z_j})."""
    with pyro.plate("K", K):
        theta = pyro.sample("theta", dist.Beta(alpha, beta))
    pi = pyro.sample("pi", dist.Dirichlet(gamma * torch.ones(K)))
    with pyro.plate("N", len(flips) if flips is not None else N):
        z = pyro.sample("z", dist.Categorical(pi))
        pyro.sample("flips", dist.Bernoulli(theta[..., z] if theta.dim() > 1 else theta[z]), obs=flips)


MIXTURE_DISPLAY = {"labels": {"flips": "x"}, "plate_index": {"N": "j"}}


def linear_regression(X, y=None, prior_scale: float = 1.0):
    """The supervised picture: theta = (intercept, coef, sigma) outside, x_i and y_i inside, both observed."""
    intercept = pyro.sample("intercept", dist.Normal(0.0, prior_scale))
    coef = pyro.sample("coef", dist.Normal(0.0, prior_scale).expand([X.shape[-1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("N", X.shape[0]):
        mean = intercept.unsqueeze(-1) + (coef.unsqueeze(-2) * X).sum(-1)
        pyro.sample("y", dist.Normal(mean, sigma.unsqueeze(-1)), obs=y)


def gmm(x=None, K: int = 3, N: int = 8):
    """z_i ~ Cat(weights), x_i ~ N(locs_{z_i}, scales_{z_i}^2)."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    with pyro.plate("K", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
        scales = pyro.sample("scales", dist.LogNormal(0.0, 1.0))
    with pyro.plate("N", len(x) if x is not None else N):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[..., z], scales[..., z]), obs=x)


GMM_DISPLAY = {"labels": {"weights": "pi", "locs": "mu", "scales": "sigma"}}


class Decoder(nn.Module):
    def __init__(self, latent_dim: int = 2, data_dim: int = 4):
        super().__init__()
        self.fc = nn.Linear(latent_dim, data_dim)

    def forward(self, z):
        return torch.sigmoid(self.fc(z))


class Encoder(nn.Module):
    def __init__(self, latent_dim: int = 2, data_dim: int = 4):
        super().__init__()
        self.fc = nn.Linear(data_dim, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x):
        h = self.fc(x)
        return h[..., : self.latent_dim], nn.functional.softplus(h[..., self.latent_dim:]) + 1e-3


DECODER, ENCODER = Decoder(), Encoder()


def vae(x, latent_dim: int = 2):
    """p(z) = N(0, I), p_theta(x | z) = Bernoulli(decoder(z))."""
    pyro.module("decoder", DECODER)
    with pyro.plate("N", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(latent_dim), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(DECODER(z)).to_event(1), obs=x)


def vae_guide(x, latent_dim: int = 2):
    """q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)."""
    pyro.module("encoder", ENCODER)
    with pyro.plate("N", x.shape[0]):
        loc, scale = ENCODER(x)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


VAE_DISPLAY = {"labels": {"decoder": "theta", "encoder": "phi"}}

# Discrete Bayesian networks as Pyro programs: each node ~ Categorical(cpt[parent states]).
SPRINKLER = {
    "cloudy": ((), [0.5, 0.5]),
    "sprinkler": (("cloudy",), [[0.5, 0.5], [0.9, 0.1]]),
    "rain": (("cloudy",), [[0.8, 0.2], [0.2, 0.8]]),
    "wet_grass": (("sprinkler", "rain"), [[[1.0, 0.0], [0.1, 0.9]], [[0.1, 0.9], [0.01, 0.99]]]),
}
ASIA = {
    "asia": ((), [0.99, 0.01]),
    "tub": (("asia",), [[0.99, 0.01], [0.95, 0.05]]),
    "smoke": ((), [0.5, 0.5]),
    "lung": (("smoke",), [[0.99, 0.01], [0.9, 0.1]]),
    "bronc": (("smoke",), [[0.7, 0.3], [0.4, 0.6]]),
    "either": (("lung", "tub"), [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]]),
    "xray": (("either",), [[0.95, 0.05], [0.02, 0.98]]),
    "dysp": (("bronc", "either"), [[[0.9, 0.1], [0.3, 0.7]], [[0.2, 0.8], [0.1, 0.9]]]),
}


def bayes_net_program(network: dict):
    """Compile {node: (parents, cpt)} (topological order) to a Pyro program taking ``evidence``."""
    cpts = {n: torch.tensor(cpt) for n, (_, cpt) in network.items()}

    def model(evidence=None):
        evidence = evidence or {}
        values = {}
        for node, (parents, _) in network.items():
            probs = cpts[node][tuple(values[p] for p in parents)] if parents else cpts[node]
            obs = torch.tensor(evidence[node]) if node in evidence else None
            values[node] = pyro.sample(node, dist.Categorical(probs), obs=obs)

    return model


def hand_built_dag(network: dict):
    import networkx as nx

    G = nx.DiGraph()
    G.add_nodes_from(network)
    G.add_edges_from((p, n) for n, (parents, _) in network.items() for p in parents)
    return G


def draw_docs(folder: str = "docs") -> list:
    """Write the golden models' diagrams to `folder` (``python tests/plate_standins.py docs``)."""
    from pathlib import Path

    import plates

    out = Path(folder)
    x = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    graphs = {
        "coin": plates.graph("coin"),
        "regression": plates.graph(linear_regression, {"X": torch.randn(10, 3), "y": torch.randn(10)},
                                   labels={"X": "x"}),
        "coin_mixture": plates.graph(coin_mixture, {"flips": x}, **MIXTURE_DISPLAY),
        "gmm": plates.graph(gmm, {"x": torch.randn(10)}, **GMM_DISPLAY),
        "vae": plates.graph(vae, {"x": torch.ones(10, 4)}, guide=vae_guide, **VAE_DISPLAY),
        "asia": plates.graph(bayes_net_program(ASIA), {"evidence": {"xray": 1}}),
    }
    return [g.render(out / f"plates-{name}.png") for name, g in graphs.items()]


if __name__ == "__main__":
    import sys

    for path in draw_docs(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print("wrote", path)
