"""The variational graph auto-encoder (Kipf & Welling, 2016): node-level latents and link prediction.

Generative story (an undirected graph on N nodes; no network in the model, the decoder is an inner
product):

    for i = 1..N:
        z_i ~ Normal(0, I_latent_dim)
    for each pair i < j:
        A_ij ~ Bernoulli(sigmoid(z_i . z_j))

The data give the edges (A_ij = 1) as an (E, 2) index array; every other pair is a non-edge. The
likelihood has one term per pair, so it is estimated by negative sampling: each evaluation scores the E
edges (plate ``E``) and M pairs drawn uniformly from the non-edges (plate ``M``), the latter scaled by
(number of non-edges) / M, which keeps the estimate of the log-likelihood unbiased at O(E + M) cost.
``weighting="balanced"`` (the default, the paper's loss) also up-weights each edge by
(number of non-edges) / E, so edges and non-edges weigh the same in total; ``"likelihood"`` is the plain
Bernoulli likelihood. Pointwise log-likelihoods (ArviZ) are always the unweighted ones.

Inference (the guide, phi the encoder weights): a two-layer graph convolutional network on the
features X and the symmetrically normalised adjacency D^-1/2 (A + I) D^-1/2,

    H = relu(A_hat X W0),  mu = A_hat H W_mu,  log sigma = A_hat H W_sigma,
    q(z_i | X, A) = Normal(mu_i, diag sigma_i^2),

with the exact KL in the ELBO. Links are scored with sigmoid(mu_i . mu_j) (`link_scores`);
`split_edges` makes the paper's 85/5/10 split, `link_prediction_report` gives AUC and AP with a
common-neighbours baseline.

Example:
    >>> from inference import fit                                                    # doctest: +SKIP
    >>> from ppl_models import vgae
    >>> graph = vgae.planted_partition(seed=0)
    >>> split = vgae.split_edges(graph["edges"], len(graph["features"]), seed=0)
    >>> post = fit("vgae", data={"edges": split["train"], "features": graph["features"]},  # doctest: +SKIP
    ...            method="svi", num_steps=300, num_samples=10)
    >>> vgae.link_prediction_report(post.data, split)["auc"]                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from ._nets import analytic_kl_factor, average_precision, bound_module, roc_auc
from .data import DataError, Field, Option
from .registry import ModelSpec, register

WEIGHTINGS = ("balanced", "likelihood")


# ---- graph helpers --------------------------------------------------------------------------------------
def _check_edges(edges: torch.Tensor, n: int) -> torch.Tensor:
    """Edges as (E, 2) int64 with i < j; `DataError` for out-of-range nodes, self loops or duplicates."""
    edges = edges.long()
    if edges.numel() and int(edges.max()) >= n:
        raise DataError("edges", f"refers to node {int(edges.max())}, but features has only N = {n} rows")
    if (edges[:, 0] == edges[:, 1]).any():
        i = int(torch.nonzero(edges[:, 0] == edges[:, 1])[0])
        raise DataError("edges", f"row {i} is a self loop ({int(edges[i, 0])}, {int(edges[i, 1])})")
    edges = torch.sort(edges, dim=1).values
    keys = edges[:, 0] * n + edges[:, 1]
    if len(torch.unique(keys)) != len(keys):
        raise DataError("edges", "lists a pair twice (each undirected edge must appear once)")
    return edges


def normalized_adjacency(edges: torch.Tensor, n: int) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 as a sparse (N, N) tensor."""
    edges = edges.long()
    loops = torch.arange(n)
    rows = torch.cat([edges[:, 0], edges[:, 1], loops])
    cols = torch.cat([edges[:, 1], edges[:, 0], loops])
    degree = torch.bincount(rows, minlength=n).to(torch.get_default_dtype())
    values = degree[rows].rsqrt() * degree[cols].rsqrt()
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


def sample_non_edges(edges: torch.Tensor, n: int, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`num` pairs (i < j) drawn uniformly, with replacement, from the pairs that are not edges."""
    keys = torch.sort(edges[:, 0].long() * n + edges[:, 1].long()).values
    out = []
    have = 0
    while have < num:
        want = int(1.2 * (num - have)) + 16
        u = torch.randint(0, n, (want,), generator=generator)
        v = torch.randint(0, n, (want,), generator=generator)
        i, j = torch.minimum(u, v), torch.maximum(u, v)
        ok = (i != j) & ~torch.isin(i * n + j, keys)
        pairs = torch.stack([i[ok], j[ok]], 1)
        out.append(pairs)
        have += len(pairs)
    return torch.cat(out)[:num]


# ---- networks -------------------------------------------------------------------------------------------
class GCN(nn.Module):
    """Two-layer GCN: (X, A_hat) -> (loc, scale) of q(z | X, A), each (N, latent_dim)."""

    def __init__(self, num_features: int, hidden: int, latent_dim: int):
        super().__init__()
        self.w0 = nn.Linear(num_features, hidden, bias=False)
        self.w_loc = nn.Linear(hidden, latent_dim, bias=False)
        self.w_scale = nn.Linear(hidden, latent_dim, bias=False)
        for w in (self.w0, self.w_loc, self.w_scale):
            nn.init.xavier_uniform_(w.weight)

    def forward(self, features: torch.Tensor, a_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(torch.sparse.mm(a_hat, self.w0(features)))
        loc = torch.sparse.mm(a_hat, self.w_loc(h))
        log_scale = torch.sparse.mm(a_hat, self.w_scale(h))
        return loc, log_scale.clamp(-10, 5).exp()


def encoder_net(num_features: int, hidden: int = 32, latent_dim: int = 16) -> nn.Module:
    """The GCN encoder, registered with Pyro as ``vgae_encoder`` (guide parameters)."""
    return bound_module("vgae_encoder", (num_features, hidden, latent_dim),
                        lambda: GCN(num_features, hidden, latent_dim))


def pair_logits(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The decoder's edge logits z_i . z_j, one per row (i, j) of `pairs` (P, 2): (..., P)."""
    return (z[..., pairs[:, 0], :] * z[..., pairs[:, 1], :]).sum(-1)


# ---- model and guide ------------------------------------------------------------------------------------
def vgae(edges: torch.Tensor, features: torch.Tensor, latent_dim: int = 16, hidden: int = 32,
         num_negatives: int = 0, weighting: str = "balanced") -> torch.Tensor:
    """VGAE's generative model. `edges` (E, 2) node indices; `features` (N, F) (used by the guide only)."""
    n = features.shape[0]
    edges = _check_edges(edges, n)
    e = len(edges)
    non_edges = n * (n - 1) / 2 - e
    m = num_negatives or e
    with pyro.plate("N", n):
        z = pyro.sample("z", dist.Normal(features.new_zeros(latent_dim), 1.0).to_event(1))
    with pyro.plate("E", e), poutine.scale(scale=non_edges / e if weighting == "balanced" else 1.0):
        pyro.sample("links", dist.Bernoulli(logits=pair_logits(z, edges)), obs=features.new_ones(e))
    negatives = sample_non_edges(edges, n, m)
    with pyro.plate("M", m), poutine.scale(scale=non_edges / m):
        pyro.sample("non_links", dist.Bernoulli(logits=pair_logits(z, negatives)), obs=features.new_zeros(m))
    return z


def vgae_guide(edges: torch.Tensor, features: torch.Tensor, latent_dim: int = 16, hidden: int = 32,
               num_negatives: int = 0, weighting: str = "balanced") -> torch.Tensor:
    """q_phi(z | X, A) = prod_i Normal(mu_i, diag sigma_i^2) from a two-layer GCN."""
    n = features.shape[0]
    edges = _check_edges(edges, n)
    encoder = encoder_net(features.shape[1], hidden, latent_dim)
    loc, scale = encoder(features, normalized_adjacency(edges, n))
    with pyro.plate("N", n):
        q = dist.Normal(loc, scale).to_event(1)
        z = pyro.sample("z", q)
        analytic_kl_factor("z_kl", q, dist.Normal(features.new_zeros(latent_dim), 1.0).to_event(1), z)
    return z


# ---- data -----------------------------------------------------------------------------------------------
def planted_partition(seed: int = 0, groups: int = 4, size: int = 30, p_in: float = 0.3,
                      p_out: float = 0.01) -> dict:
    """A planted-partition graph (4 groups of 30 nodes; an edge within a group with probability `p_in`,
    between groups with `p_out`, each pair once) with one-hot identity features.

    Drawn with NumPy rather than networkx's `planted_partition_graph`, whose stream changed between
    networkx 3.6 and 3.7 (the same seed gave 568 edges and 569 different ones): the embedded data must not
    depend on a library's version.
    """
    num_nodes = groups * size
    block = np.repeat(np.arange(groups), size)
    i, j = np.triu_indices(num_nodes, k=1)                   # every pair once, i < j, in order
    keep = np.random.default_rng(seed).random(i.size) < np.where(block[i] == block[j], p_in, p_out)
    edges = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    return {"edges": edges, "features": np.eye(num_nodes, dtype=np.float32)}


def default_data(seed: int = 0) -> dict:
    """`planted_partition`: 120 nodes in 4 groups, about 580 edges, identity features."""
    return planted_partition(seed)


def split_edges(edges: Any, num_nodes: int, val_fraction: float = 0.05, test_fraction: float = 0.10,
                seed: int = 0) -> dict[str, np.ndarray]:
    """The link-prediction split of Kipf & Welling: edges shuffled into train / validation / test
    (85 / 5 / 10 %), and as many non-edges of the full graph as validation and test edges."""
    edges = np.sort(np.asarray(edges, dtype=np.int64), axis=1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(edges))
    n_test, n_val = int(np.floor(len(edges) * test_fraction)), int(np.floor(len(edges) * val_fraction))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    gen = torch.Generator().manual_seed(int(seed))
    negatives = sample_non_edges(torch.as_tensor(edges), num_nodes, 4 * (n_test + n_val) + 64, gen).numpy()
    keys = negatives[:, 0] * num_nodes + negatives[:, 1]
    _, first = np.unique(keys, return_index=True)
    negatives = negatives[np.sort(first)]                       # distinct pairs, in random order
    if len(negatives) < n_test + n_val:
        raise DataError("edges", "the graph is too dense to draw as many non-edges as held-out edges")
    return {"train": edges[train], "val_pos": edges[val], "val_neg": negatives[n_test:n_test + n_val],
            "test_pos": edges[test], "test_neg": negatives[:n_test]}


# ---- link prediction ------------------------------------------------------------------------------------
def link_scores(data: Mapping[str, Any], pairs: Any) -> np.ndarray:
    """sigmoid(mu_i . mu_j) for each pair, mu the encoder mean of the fitted network (in Pyro's store)."""
    features = torch.as_tensor(np.asarray(data["features"]), dtype=torch.get_default_dtype())
    edges = torch.as_tensor(np.asarray(data["edges"]))
    n = features.shape[0]
    encoder = encoder_net(features.shape[1], data.get("hidden", 32), data.get("latent_dim", 16))
    with torch.no_grad():
        loc, _ = encoder(features, normalized_adjacency(_check_edges(edges, n), n))
        return torch.sigmoid(pair_logits(loc, torch.as_tensor(np.asarray(pairs)).long())).numpy()


def common_neighbours(edges: Any, num_nodes: int, pairs: Any) -> np.ndarray:
    """Number of common neighbours of each pair in the graph `edges`: the classic link-prediction baseline."""
    from scipy.sparse import coo_matrix

    edges, pairs = np.asarray(edges), np.asarray(pairs)
    a = coo_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                   shape=(num_nodes, num_nodes)).tocsr()
    return np.asarray(a[pairs[:, 0]].multiply(a[pairs[:, 1]]).sum(1)).ravel()


def link_prediction_report(data: Mapping[str, Any], split: Mapping[str, Any], part: str = "test") -> dict[str, float]:
    """AUC and AP on the held-out edges and non-edges of `split` (`part` = ``test`` or ``val``), for the
    fitted VGAE and for common neighbours in the training graph."""
    pos, neg = np.asarray(split[f"{part}_pos"]), np.asarray(split[f"{part}_neg"])
    pairs = np.concatenate([pos, neg])
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    vgae_scores = link_scores(data, pairs)
    cn = common_neighbours(data["edges"], len(np.asarray(data["features"])), pairs)
    return {"auc": roc_auc(labels, vgae_scores), "ap": average_precision(labels, vgae_scores),
            "common_neighbours_auc": roc_auc(labels, cn), "common_neighbours_ap": average_precision(labels, cn)}


def load_cora(root: str) -> dict:
    """Cora from ``<root>/cora/cora.npz`` (the graph auto-encoder version): edges (5278, 2) and dense
    binary bag-of-words features (2708, 1433)."""
    from pathlib import Path

    from scipy.sparse import csr_matrix

    f = np.load(Path(root) / "cora" / "cora.npz")
    n, d = int(f["num_nodes"]), int(f["num_features"])
    x = csr_matrix((np.ones(len(f["feat_indices"])), f["feat_indices"], f["feat_indptr"]), shape=(n, d))
    return {"edges": f["edges"].astype(np.int64), "features": x.toarray().astype(np.float32)}


SPEC = register(
    ModelSpec(
        name="vgae",
        model=vgae,
        guide=vgae_guide,
        default_data=default_data,
        engines=("svi",),
        demo={"num_steps": 400, "num_samples": 100},  # a quick look for `ppl demo`; fit() defaults train fully
        description="Variational graph auto-encoder: z_i ~ N(0, I), A_ij ~ Bernoulli(sigmoid(z_i . z_j)), GCN guide",
        fields=(
            Field("edges", "count", (("E", "two"),), "undirected edges as node index pairs, each once",
                  check=lambda e: None if e.shape[-1] == 2 else f"must have 2 columns, got {e.shape[-1]}"),
            Field("features", "real", (("N", "F"),), "node features, one row per node"),
        ),
        options={
            "latent_dim": Option(16, "size of each node's latent z_i", low=1),
            "hidden": Option(32, "width of the GCN's hidden layer", low=1),
            "num_negatives": Option(0, "non-edges sampled per evaluation (0: as many as edges)", low=0),
            "weighting": Option("balanced", "'balanced' (edges up-weighted as in the paper) or 'likelihood'",
                                choices=WEIGHTINGS),
        },
        display={"labels": {"vgae_encoder": "phi"}},
    )
)
