"""GraphVAE's measures: reconstruction of held-out graphs, generation, the baselines they are compared with,
and graph metrics.

- `reconstruction_report`: held-out graphs through the fitted encoder and decoder, matched, against
  Erdos-Renyi with the training edge rate (`edge_rate`).
- `generation_report`: `graph_statistics` (validity = membership of the family (`family_member`),
  uniqueness, novelty, degree and clustering `mmd`) of prior samples (`sample_graphs`), of Erdos-Renyi
  graphs (`sample_erdos_renyi`) and of a stochastic block model with the node types as blocks
  (`sample_block_model`).

The fitted networks are the ones in Pyro's param store; `data` are the data and options of the fit
(``Posterior.data``).

Example:
    >>> from ppl_models.graph_vae import evaluation, graphs
    >>> train, _ = graphs.family_split(seed=0)
    >>> data = graphs.graphs_to_data(train, max_nodes=10)
    >>> round(evaluation.edge_rate(data["adjacency"], data["features"]), 4)
    0.2835
    >>> evaluation.graph_statistics(evaluation.sample_erdos_renyi(data, num=50), train)["validity"] < 0.5
    True
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pyro
import torch
from torch import nn

from ..data import as_tensor
from .graphs import data_to_graphs, family
from .model import SPEC, graph_vae
from .parts import gather_slots, match, networks, with_empty


def edge_rate(adjacency: Any, features: Any) -> float:
    """Erdos-Renyi MLE of the edge probability: edges / pairs of present nodes, pooled over graphs."""
    adjacency, features = np.asarray(adjacency), np.asarray(features)
    n = features.sum((-1, -2))
    return float(np.triu(adjacency, 1).sum() / (n * (n - 1) / 2).sum())


def reconstruction_report(data: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, float]:
    """Reconstruct the `test` graphs through the fitted networks and compare with Erdos-Renyi.

    The encoder mean gives z; the decoded graph is matched to the input; an edge is predicted where its
    matched probability (given the input's node types) exceeds 1/2, a node type by the matched slot's most
    probable type. Reports, for the model and for G(n, p) with the training edge rate p: the balanced edge
    accuracy (mean of the true-positive and true-negative rates over pairs of present nodes; 0.5 for any
    prediction that ignores the graph), the edge log-likelihood per pair, and the fraction of graphs whose
    edges are all right; plus the model's node-type accuracy over all slots.
    """
    opts = SPEC.option_values(data, batch_size=0)
    adjacency, features = as_tensor(test["adjacency"]), as_tensor(test["features"])
    g, m, f = features.shape
    decoder, encoder = networks(m, f, opts["hidden"], opts["latent_dim"])
    with torch.no_grad():
        z = encoder(features, adjacency)[0]
        type_logits, embedding = decoder.nodes(z)
        perm = match(decoder, type_logits, embedding, features, adjacency)
        type_logits, embedding = gather_slots(type_logits, perm), gather_slots(embedding, perm)
        logits = decoder.edges(embedding, with_empty(features))
    present = features.sum(-1) > 0
    pairs = (present.unsqueeze(-1) & present.unsqueeze(-2)) & torch.triu(torch.ones(m, m, dtype=torch.bool), 1)
    truth = adjacency.bool()
    pred = logits > 0
    p = edge_rate(data["adjacency"], data["features"])

    def scores(prediction: torch.Tensor, loglik: torch.Tensor) -> dict:
        tp = (prediction & truth & pairs).sum().item() / max((truth & pairs).sum().item(), 1)
        tn = (~prediction & ~truth & pairs).sum().item() / max((~truth & pairs).sum().item(), 1)
        exact = ((prediction != truth) & pairs).flatten(1).any(1).logical_not().float().mean().item()
        return {"balanced_accuracy": 0.5 * (tp + tn), "loglik_per_pair": float(loglik[pairs].mean()),
                "exact": exact}

    t = truth.to(logits.dtype)
    model_ll = t * nn.functional.logsigmoid(logits) + (1 - t) * nn.functional.logsigmoid(-logits)
    er_ll = t * math.log(p) + (1 - t) * math.log1p(-p)
    report = {f"model_{k}": v for k, v in scores(pred, model_ll).items()}
    report.update({f"er_{k}": v for k, v in scores(torch.full_like(pred, p > 0.5), er_ll).items()})
    types_true = with_empty(features).argmax(-1)
    report["model_type_accuracy"] = float((type_logits.argmax(-1) == types_true).float().mean())
    report["er_edge_rate"] = p
    return report


def sample_graphs(data: Mapping[str, Any], num: int = 500, seed: int = 0) -> list:
    """`num` graphs from the fitted model: z ~ p(z), then node types and edges from the decoder."""
    opts = SPEC.option_values(data, batch_size=0, G=num)
    features = np.asarray(data["features"])
    opts.update(max_nodes=features.shape[1], num_types=features.shape[2])
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        trace = pyro.poutine.trace(graph_vae).get_trace(**opts)
    return data_to_graphs(trace.nodes["adjacency"]["value"].numpy(), trace.nodes["features"]["value"].numpy())


def sample_erdos_renyi(train: Mapping[str, Any], num: int = 500, seed: int = 0) -> list:
    """G(n, p) graphs: n from the training node counts, p the pooled training edge rate."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    counts = np.asarray(train["features"]).sum((-1, -2)).astype(int)
    p = edge_rate(train["adjacency"], train["features"])
    return [nx.gnp_random_graph(int(n), p, seed=int(rng.integers(2**31))) for n in rng.choice(counts, num)]


def sample_block_model(train: Mapping[str, Any], num: int = 500, seed: int = 0) -> list:
    """A stochastic block model fitted by maximum likelihood with the node types as blocks:
    block sizes ~ Categorical(type frequencies), P(A_ab = 1) = B[type_a, type_b] = edges / pairs."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    adjacency, features = np.asarray(train["adjacency"]), np.asarray(train["features"])
    counts = features.sum((-1, -2)).astype(int)
    pi = features.sum((0, 1)) / features.sum()
    edges = np.einsum("gab,gak,gbl->kl", np.triu(adjacency, 1), features, features)
    edges = edges + edges.T - np.diag(np.diag(edges))
    per_type = features.sum(1)                                                     # (G, F)
    pairs = np.einsum("gk,gl->kl", per_type, per_type) - np.diag(per_type.sum(0))
    pairs = pairs - np.diag(np.diag(pairs)) / 2
    block = np.divide(edges, pairs, out=np.zeros_like(edges), where=pairs > 0)
    out = []
    for n in rng.choice(counts, num):
        types = rng.choice(len(pi), size=int(n), p=pi)
        probs = block[np.ix_(types, types)]
        upper = np.triu(rng.random((n, n)) < probs, 1)
        g = nx.from_numpy_array((upper | upper.T).astype(int))
        nx.set_node_attributes(g, dict(enumerate(int(t) for t in types)), "type")
        out.append(g)
    return out


def _family_index() -> dict:
    index: dict = {}
    for name, g in family().items():
        index.setdefault((g.number_of_nodes(), g.number_of_edges()), []).append((name, g))
    return index


def family_member(graph: Any, index: dict | None = None) -> str | None:
    """The name of the family member `graph` is isomorphic to (e.g. ``"cycle7"``), or None: validity."""
    import networkx as nx

    index = _family_index() if index is None else index
    for name, candidate in index.get((graph.number_of_nodes(), graph.number_of_edges()), []):
        if nx.is_isomorphic(graph, candidate):
            return name
    return None


def _degree_hist(g: Any) -> np.ndarray:
    h = np.bincount([d for _, d in g.degree], minlength=11)[:11].astype(float)
    return h / max(h.sum(), 1)


def _clustering_hist(g: Any) -> np.ndarray:
    import networkx as nx

    values = list(nx.clustering(g).values()) or [0.0]
    h, _ = np.histogram(values, bins=10, range=(0, 1))
    return h / max(h.sum(), 1)


def mmd(a: np.ndarray, b: np.ndarray, sigma: float = 1.0) -> float:
    """Squared maximum mean discrepancy between two sets of histograms, Gaussian kernel (V-statistic)."""
    def k(x, y):
        d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return np.exp(-d / (2 * sigma**2)).mean()
    return float(k(a, a) + k(b, b) - 2 * k(a, b))


def graph_statistics(samples: Sequence[Any], train_graphs: Sequence[Any]) -> dict[str, float]:
    """Validity (a member of the family), uniqueness (distinct valid graphs / valid), novelty (valid graphs
    isomorphic to no training graph / valid), and degree and clustering MMD^2 against the training set."""
    index = _family_index()
    train_names = {g.graph.get("name") for g in train_graphs}
    names = [family_member(g, index) for g in samples]
    names = [n for n in names if n is not None]
    n_valid = len(names)
    return {
        "validity": n_valid / max(len(samples), 1),
        "uniqueness": len(set(names)) / n_valid if n_valid else 0.0,
        "novelty": sum(n not in train_names for n in names) / n_valid if n_valid else 0.0,
        "degree_mmd": mmd(np.stack([_degree_hist(g) for g in samples]),
                          np.stack([_degree_hist(g) for g in train_graphs])),
        "clustering_mmd": mmd(np.stack([_clustering_hist(g) for g in samples]),
                              np.stack([_clustering_hist(g) for g in train_graphs])),
    }


def generation_report(data: Mapping[str, Any], train_graphs: Sequence[Any], num: int = 500,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """`graph_statistics` of `num` samples from the fitted model, from Erdos-Renyi and from the block model.

    `train_graphs` are the training graphs as networkx graphs with ``graph["name"]`` set to their family
    member (as `family_split` returns them), which novelty compares against.
    """
    return {
        "graph_vae": graph_statistics(sample_graphs(data, num, seed), train_graphs),
        "erdos_renyi": graph_statistics(sample_erdos_renyi(data, num, seed), train_graphs),
        "block_model": graph_statistics(sample_block_model(data, num, seed), train_graphs),
    }
