"""GraphVAE: a one-shot generator of small graphs with one graph-level latent (Simonovsky & Komodakis, 2018).

Generative story (the course's GraphVAE; theta are the decoder weights, learned point parameters). A graph
has at most M node slots; each slot holds a node of type 1..F or is empty:

    for g = 1..G:
        z_g ~ Normal(0, I_latent_dim)
        for each slot a = 1..M:                       p(X | z): node types from an MLP of z
            x_ga ~ Categorical(softmax(f_theta(z_g)_a))      over {empty, type 1..F}
        for each pair of present slots a < b:        p(A | X, z) = prod_{a<b} p(A_ab | x_a, x_b, z)
            A_gab ~ Bernoulli(sigmoid(e_theta(h(z_g)_a, x_ga, h(z_g)_b, x_gb)))

Edges are conditionally independent given z and the node types; pairs with an empty slot have no edge.
The data's node order is arbitrary, so the likelihood of an observed graph is computed after matching it
to the decoded graph: the permutation of the input's nodes onto the decoder's slots that best agrees on
node types and edges, found with the Hungarian algorithm (scipy's ``linear_sum_assignment``) on a node
similarity plus an edge similarity refined over a few rounds. The matched likelihood is invariant to the
order of the input nodes (``matching=False`` scores the input in its given order, for comparison).

Inference (the guide): q_phi(z_g | X_g, A_g) = Normal(mu_phi, diag sigma_phi^2) from a message-passing
graph network with a sum readout over present nodes (permutation invariant), exact KL in the ELBO.

Data: ``adjacency`` (G, M, M) symmetric 0/1 with a zero diagonal, and ``features`` (G, M, F) one-hot node
types with all-zero rows for empty slots. `graphs_to_data` builds both from networkx graphs. The default
data are cycles, paths, stars and grids of 4-10 nodes, node type = degree (1, 2, 3, 4+).

Beside this file: `parts` (the distributions `NodeTypes` and `Adjacency`, the networks, the matcher),
`graphs` (the graph family and its data) and `evaluation` (`reconstruction_report` on held-out graphs
against Erdos-Renyi; `generation_report`: validity, uniqueness, novelty, degree/clustering MMD of prior
samples, against Erdos-Renyi and a stochastic block model fitted with the node types as blocks). The
package `ppl_models.graph_vae` exports the public names of all four.

Example:
    >>> from inference import fit                                                     # doctest: +SKIP
    >>> from ppl_models import graph_vae
    >>> train, test = graph_vae.family_split(seed=0)
    >>> post = fit("graph_vae", method="svi", num_samples=20)                          # doctest: +SKIP
    >>> graph_vae.reconstruction_report(post.data, graph_vae.graphs_to_data(test))     # doctest: +SKIP
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from .._nets import analytic_kl_factor, subsample_size
from ..data import DataError, Field, Option
from ..registry import ModelSpec, register
from .graphs import NUM_TYPES, default_data
from .parts import Adjacency, NodeTypes, gather_slots, match, networks, with_empty


def graph_vae(adjacency: torch.Tensor | None = None, features: torch.Tensor | None = None,
              latent_dim: int = 8, hidden: int = 128, matching: bool = True, batch_size: int = 0,
              G: int = 16, max_nodes: int = 10, num_types: int = 4) -> torch.Tensor:
    """GraphVAE's generative model; pass `adjacency` and `features` as `None` to sample G graphs."""
    g, m, f = _shapes(adjacency, features, G, max_nodes, num_types)
    decoder, _ = networks(m, f, hidden, latent_dim)                       # theta: learned point parameters
    with pyro.plate("G", g, subsample_size=subsample_size(g, batch_size)) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(latent_dim), 1.0).to_event(1))
        type_logits, embedding = decoder.nodes(z)
        x_obs = None if features is None else features[idx]
        a_obs = None if adjacency is None else adjacency[idx]
        if matching and x_obs is not None and a_obs is not None:
            perm = match(decoder, type_logits, embedding, x_obs, a_obs)    # slot of each input node
            type_logits, embedding = gather_slots(type_logits, perm), gather_slots(embedding, perm)
        x = pyro.sample("features", NodeTypes(type_logits), obs=x_obs)
        types = with_empty(x)
        return pyro.sample("adjacency", Adjacency(decoder.edges(embedding, types), 1 - types[..., 0]), obs=a_obs)


def graph_vae_guide(adjacency: torch.Tensor | None = None, features: torch.Tensor | None = None,
                    latent_dim: int = 8, hidden: int = 128, matching: bool = True, batch_size: int = 0,
                    G: int = 16, max_nodes: int = 10, num_types: int = 4) -> torch.Tensor:
    """q_phi(z_g | X_g, A_g): a message-passing encoder with a permutation-invariant readout."""
    if adjacency is None or features is None:
        raise DataError("adjacency", "the guide q(z | X, A) needs both adjacency and features")
    g, m, f = _shapes(adjacency, features, G, max_nodes, num_types)
    _, encoder = networks(m, f, hidden, latent_dim)                       # phi
    with pyro.plate("G", g, subsample_size=subsample_size(g, batch_size)) as idx:
        loc, scale = encoder(features[idx], adjacency[idx])
        q = dist.Normal(loc, scale).to_event(1)
        z = pyro.sample("z", q)
        analytic_kl_factor("z_kl", q, dist.Normal(torch.zeros(latent_dim), 1.0).to_event(1), z)
        return z


# ---- shapes and checks of the data ----------------------------------------------------------------------
def _shapes(adjacency, features, G: int, max_nodes: int, num_types: int) -> tuple[int, int, int]:
    """(G, M, F) of the data, or of the options when sampling; `DataError` for data that do not fit."""
    if features is None:
        if adjacency is not None:
            raise DataError("features", "is needed with adjacency (it says which slots hold a node)")
        return G, max_nodes, num_types
    g, m, f = features.shape
    if adjacency is not None and tuple(adjacency.shape) != (g, m, m):
        raise DataError("adjacency", f"expected shape (G, M, M) = ({g}, {m}, {m}) to match features, "
                        f"got {tuple(adjacency.shape)}")
    if adjacency is not None:
        present = (features.sum(-1) > 0).to(adjacency.dtype)
        stray = adjacency * (1 - present.unsqueeze(-1) * present.unsqueeze(-2))
        if stray.any():
            g0, a, b = (int(v) for v in torch.nonzero(stray)[0])
            raise DataError("adjacency", f"graph {g0} has an edge ({a}, {b}) touching an empty slot "
                            "(a row of features that is all zero)")
    return g, m, f


def _check_adjacency(a: torch.Tensor) -> str | None:
    if not torch.equal(a, a.transpose(-1, -2)):
        return "must be symmetric (an undirected graph)"
    if torch.diagonal(a, dim1=-2, dim2=-1).any():
        return "must have a zero diagonal (no self loops)"
    return None


def _check_features(x: torch.Tensor) -> str | None:
    if (x.sum(-1) > 1).any():
        return "each row must be one-hot (one node type) or all zero (an empty slot)"
    return None


SPEC = register(
    ModelSpec(
        name="graph_vae",
        model=graph_vae,
        guide=graph_vae_guide,
        default_data=default_data,
        engines=("svi",),
        demo={"num_steps": 300, "num_samples": 50},  # a quick look for `ppl demo`; fit() defaults train fully
        description="GraphVAE: graph-level z ~ N(0, I), node types and edges from a decoder, Hungarian matching",
        fields=(
            Field("adjacency", "binary", (("G", "M", "M"),), "padded symmetric adjacency matrices",
                  check=_check_adjacency),
            Field("features", "binary", (("G", "M", "F"),), "one-hot node types, zero rows for empty slots",
                  check=_check_features),
        ),
        options={
            "latent_dim": Option(8, "size of the graph-level latent z", low=1),
            "hidden": Option(128, "width of the encoder and decoder networks", low=2),
            "matching": Option(True, "match the decoded graph to the input (Hungarian algorithm)"),
            "batch_size": Option(0, "mini-batch size of the graph plate (0: all graphs)", low=0),
            "G": Option(16, "number of graphs to sample when the data are None", low=1),
            "max_nodes": Option(10, "node slots per graph when sampling without data", low=2),
            "num_types": Option(NUM_TYPES, "node types when sampling without data", low=1),
        },
        display={"labels": {"graph_vae_encoder": "phi", "graph_vae_decoder": "theta"}},
    )
)
