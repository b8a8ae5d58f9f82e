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

Reports: `reconstruction_report` (held-out graphs, against Erdos-Renyi) and `generation_report` (validity,
uniqueness, novelty, degree/clustering MMD of prior samples, against Erdos-Renyi and a stochastic block
model fitted with the node types as blocks).

Example:
    >>> from inference import fit                                                     # doctest: +SKIP
    >>> from ppl_models import graph_vae
    >>> train, test = graph_vae.family_split(seed=0)
    >>> post = fit("graph_vae", method="svi", num_samples=20)                          # doctest: +SKIP
    >>> graph_vae.reconstruction_report(post.data, graph_vae.graphs_to_data(test))     # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from scipy.optimize import linear_sum_assignment
from torch import nn

from ._nets import analytic_kl_factor, bound_module, mlp
from .data import DataError, Field, Option
from .registry import ModelSpec, register

MATCH_ROUNDS = 3


# ---- distributions over padded graphs -------------------------------------------------------------------
def with_empty(features: torch.Tensor) -> torch.Tensor:
    """(..., M, F) one-hot types with zero rows for empty slots -> (..., M, F + 1), column 0 = empty."""
    empty = 1.0 - features.sum(-1, keepdim=True)
    return torch.cat([empty, features], -1)


class NodeTypes(TorchDistribution):
    """One categorical per slot over {empty, 1..F}; a value is (..., M, F) one-hot, a zero row = empty."""

    arg_constraints = {"logits": constraints.real}
    support = constraints.independent(constraints.boolean, 2)

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None):
        self.logits = logits
        event = (logits.shape[-2], logits.shape[-1] - 1)
        super().__init__(logits.shape[:-2], torch.Size(event), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return NodeTypes(self.logits.expand(batch_shape + self.logits.shape[-2:]))

    def sample(self, sample_shape=torch.Size()):
        index = dist.Categorical(logits=self.logits).sample(sample_shape)
        return nn.functional.one_hot(index, self.logits.shape[-1])[..., 1:].to(self.logits.dtype)

    def log_prob(self, value):
        return (with_empty(value) * self.logits.log_softmax(-1)).sum((-1, -2))


class Adjacency(TorchDistribution):
    """Symmetric 0/1 adjacency (..., M, M) with a zero diagonal: A_ab ~ Bernoulli(sigmoid(logits_ab)) for
    a < b when both slots are present (`present` (..., M) 0/1), no edge otherwise."""

    arg_constraints = {"logits": constraints.real}
    support = constraints.independent(constraints.boolean, 2)

    def __init__(self, logits: torch.Tensor, present: torch.Tensor, validate_args: bool | None = None):
        self.logits, self.present = torch.broadcast_tensors(logits, present.unsqueeze(-1) * present.unsqueeze(-2))
        m = logits.shape[-1]
        super().__init__(self.logits.shape[:-2], torch.Size((m, m)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        new = Adjacency.__new__(Adjacency)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.present = self.present.expand(batch_shape + self.event_shape)
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        return new

    def _pairs(self) -> torch.Tensor:
        m = self.logits.shape[-1]
        return torch.triu(torch.ones(m, m, dtype=self.logits.dtype), 1) * self.present

    def sample(self, sample_shape=torch.Size()):
        upper = dist.Bernoulli(logits=self.logits).sample(sample_shape) * self._pairs()
        return upper + upper.transpose(-1, -2)

    def log_prob(self, value):
        ll = value * nn.functional.logsigmoid(self.logits) + (1 - value) * nn.functional.logsigmoid(-self.logits)
        return (ll * self._pairs()).sum((-1, -2))


# ---- networks -------------------------------------------------------------------------------------------
class _Encoder(nn.Module):
    """Message passing on (X, A) with a sum readout over present nodes -> (loc, scale) of q(z | X, A)."""

    def __init__(self, num_types: int, hidden: int, latent_dim: int, layers: int = 3):
        super().__init__()
        self.inp = nn.Linear(num_types, hidden)
        self.self_w = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.nb_w = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.gate = nn.Linear(hidden, hidden)
        self.out = mlp((hidden, hidden, 2 * latent_dim))

    def forward(self, features: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        present = (features.sum(-1, keepdim=True) > 0).to(features.dtype)
        h = torch.relu(self.inp(features)) * present
        for w_self, w_nb in zip(self.self_w, self.nb_w):
            h = torch.relu(w_self(h) + w_nb(adjacency @ h)) * present
        pooled = (torch.sigmoid(self.gate(h)) * h * present).sum(-2)
        loc, raw = self.out(pooled).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-4


class _Decoder(nn.Module):
    """z -> slot type logits (..., M, F + 1) and slot embeddings (..., M, E); edge logits from pairs of
    (embedding, type) of two slots, symmetric in the pair."""

    def __init__(self, max_nodes: int, num_types: int, hidden: int, latent_dim: int):
        super().__init__()
        self.m, self.f, self.e = max_nodes, num_types, hidden // 2
        self.body = mlp((latent_dim, hidden, 2 * hidden))
        self.types = nn.Linear(2 * hidden, max_nodes * (num_types + 1))
        self.embed = nn.Linear(2 * hidden, max_nodes * self.e)
        width = self.e + num_types + 1
        self.rank = hidden // 4
        self.pair = nn.Linear(width, 2 * self.rank + 1)

    def nodes(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(z))
        lead = z.shape[:-1]
        return (self.types(h).reshape(lead + (self.m, self.f + 1)), self.embed(h).reshape(lead + (self.m, self.e)))

    def edges(self, embedding: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Edge logits (..., M, M) = p_a . p_b - q_a . q_b + s_a + s_b, where (p, q, s) is a linear map of
        u = (embedding, type) of a slot: a symmetric, indefinite low-rank form over the slots."""
        lead = torch.broadcast_shapes(embedding.shape[:-1], types.shape[:-1])
        u = torch.cat([embedding.expand(lead + embedding.shape[-1:]), types.expand(lead + types.shape[-1:])], -1)
        p, q, s = self.pair(u).split([self.rank, self.rank, 1], -1)
        scale = self.rank ** -0.5
        return scale * (p @ p.transpose(-1, -2) - q @ q.transpose(-1, -2)) + s + s.transpose(-1, -2)


def _nets(max_nodes: int, num_types: int, hidden: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    return (bound_module("graph_vae_decoder", (max_nodes, num_types, hidden, latent_dim),
                         lambda: _Decoder(max_nodes, num_types, hidden, latent_dim)),
            bound_module("graph_vae_encoder", (num_types, hidden, latent_dim),
                         lambda: _Encoder(num_types, hidden, latent_dim)))


# ---- matching -------------------------------------------------------------------------------------------
def _gather_slots(values: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """values (..., M, K) re-ordered along M by perm (..., M): out[..., i, :] = values[..., perm_i, :]."""
    lead = torch.broadcast_shapes(values.shape[:-2], perm.shape[:-1])
    values = values.expand(lead + values.shape[-2:])
    index = perm.expand(lead + perm.shape[-1:]).unsqueeze(-1).expand(lead + (perm.shape[-1], values.shape[-1]))
    return values.gather(-2, index)


def match(decoder: nn.Module, type_logits: torch.Tensor, embedding: torch.Tensor, features: torch.Tensor,
          adjacency: torch.Tensor, rounds: int = MATCH_ROUNDS) -> torch.Tensor:
    """For each input graph, the slot of each input node: perm (..., M), a permutation of 0..M-1.

    The objective is the matched log-likelihood: node similarity S_x[i, a] = log p(type of input node i
    at slot a) plus, for each pair of input nodes, the log-probability of their edge (or non-edge) at
    their slots: a quadratic assignment problem. It is solved approximately in two stages:

    1. graduated assignment (Gold & Rangarajan, 1996): a soft assignment X (doubly stochastic, by
       Sinkhorn iterations) is refined with the linearised objective Q = S_x + S_A(X), where
       S_A(X)[i, a] = sum_j sum_b X[j, b] log p(A_ij | slots a, b), at rising inverse temperature. Only
       tensor operations, so equal input graphs in any node order get equal scores Q, permuted;
    2. `linear_sum_assignment` (Hungarian) on Q, then a few rounds of re-solving with S_x + S_A of the
       current hard assignment, keeping the assignment of highest matched log-likelihood.
    """
    with torch.no_grad():
        log_types = type_logits.log_softmax(-1)                               # (..., M slots, F + 1)
        observed = with_empty(features)                                      # (..., M nodes, F + 1)
        lead = torch.broadcast_shapes(log_types.shape[:-2], observed.shape[:-2])
        m = observed.shape[-2]
        s_node = (observed.unsqueeze(-2) * log_types.unsqueeze(-3)).sum(-1).expand(lead + (m, m))
        soft = decoder.edges(embedding, log_types.exp())                      # decoded graph, slot order
        log_p, log_q = nn.functional.logsigmoid(soft), nn.functional.logsigmoid(-soft)
        log_p, log_q = log_p.expand(lead + (m, m)), log_q.expand(lead + (m, m))
        present = observed[..., 1:].sum(-1).expand(lead + (m,))
        adj = adjacency.expand(lead + (m, m))
        eye = torch.eye(m, dtype=soft.dtype)

        def solve(score: torch.Tensor) -> torch.Tensor:
            flat = score.reshape(-1, m, m).cpu().numpy()
            out = np.empty((flat.shape[0], m), dtype=np.int64)
            for k, s in enumerate(flat):
                rows, cols = linear_sum_assignment(s, maximize=True)
                out[k, rows] = cols
            return torch.as_tensor(out).reshape(lead + (m,))

        def total(perm: torch.Tensor) -> torch.Tensor:
            node = s_node.gather(-1, perm.unsqueeze(-1)).squeeze(-1).sum(-1)
            lp = log_p.gather(-2, perm.unsqueeze(-1).expand(lead + (m, m))).gather(
                -1, perm.unsqueeze(-2).expand(lead + (m, m)))
            lq = log_q.gather(-2, perm.unsqueeze(-1).expand(lead + (m, m))).gather(
                -1, perm.unsqueeze(-2).expand(lead + (m, m)))
            pair = present.unsqueeze(-1) * present.unsqueeze(-2) * (1 - eye)
            return node + 0.5 * (pair * (adj * lp + (1 - adj) * lq)).sum((-1, -2))

        pairs_in = present.unsqueeze(-1) * present.unsqueeze(-2)
        edge_w, non_w = adj * pairs_in, (1 - adj) * pairs_in * (1 - eye)
        q = s_node
        for beta in (0.5, 2.0, 8.0):
            log_x = beta * q
            for _ in range(6):                                               # Sinkhorn: doubly stochastic
                log_x = log_x - log_x.logsumexp(-1, keepdim=True)
                log_x = log_x - log_x.logsumexp(-2, keepdim=True)
            x = log_x.exp()                                                  # x[j, b]: node j at slot b
            q = s_node + edge_w @ x @ log_p.transpose(-1, -2) + non_w @ x @ log_q.transpose(-1, -2)
        perm = solve(q)
        best, best_score = perm, total(perm)
        for _ in range(rounds):
            # columns: slots of the other nodes j under the current assignment
            lp_j = log_p.gather(-1, perm.unsqueeze(-2).expand(lead + (m, m)))      # [slot a, node j]
            lq_j = log_q.gather(-1, perm.unsqueeze(-2).expand(lead + (m, m)))
            others = present.unsqueeze(-2)                                        # only present nodes j
            s_edge = (adj * others) @ lp_j.transpose(-1, -2) + ((1 - adj) * others * (1 - eye)) @ lq_j.transpose(-1, -2)
            s_edge = s_edge * present.unsqueeze(-1)
            perm = solve(s_node + s_edge)
            score = total(perm)
            better = score > best_score
            best = torch.where(better.unsqueeze(-1), perm, best)
            best_score = torch.maximum(score, best_score)
        return best


# ---- model and guide ------------------------------------------------------------------------------------
def _batch(n: int, batch_size: int | None) -> int | None:
    return None if not batch_size or batch_size >= n else int(batch_size)


def _shapes(adjacency, features, G: int, max_nodes: int, num_types: int) -> tuple[int, int, int]:
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


def graph_vae(adjacency: torch.Tensor | None = None, features: torch.Tensor | None = None,
              latent_dim: int = 8, hidden: int = 128, matching: bool = True, batch_size: int = 0,
              G: int = 16, max_nodes: int = 10, num_types: int = 4) -> torch.Tensor:
    """GraphVAE's generative model; pass `adjacency` and `features` as `None` to sample G graphs."""
    g, m, f = _shapes(adjacency, features, G, max_nodes, num_types)
    decoder, _ = _nets(m, f, hidden, latent_dim)                          # theta: learned point parameters
    with pyro.plate("G", g, subsample_size=_batch(g, batch_size)) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(latent_dim), 1.0).to_event(1))
        type_logits, embedding = decoder.nodes(z)
        x_obs = None if features is None else features[idx]
        a_obs = None if adjacency is None else adjacency[idx]
        if matching and x_obs is not None and a_obs is not None:
            perm = match(decoder, type_logits, embedding, x_obs, a_obs)    # slot of each input node
            type_logits, embedding = _gather_slots(type_logits, perm), _gather_slots(embedding, perm)
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
    _, encoder = _nets(m, f, hidden, latent_dim)                          # phi
    with pyro.plate("G", g, subsample_size=_batch(g, batch_size)) as idx:
        loc, scale = encoder(features[idx], adjacency[idx])
        q = dist.Normal(loc, scale).to_event(1)
        z = pyro.sample("z", q)
        analytic_kl_factor("z_kl", q, dist.Normal(torch.zeros(latent_dim), 1.0).to_event(1), z)
        return z


# ---- data -----------------------------------------------------------------------------------------------
NUM_TYPES = 4


def degree_type(degree: int) -> int:
    """Node type of the default data: 0, 1, 2, 3 for degree 1, 2, 3, 4 or more (0 for an isolated node)."""
    return int(min(max(degree, 1), 4) - 1)


def family(min_nodes: int = 4, max_nodes: int = 10) -> dict[str, Any]:
    """The graph family: name -> networkx graph, for cycles, paths, stars and 2-D grids of 4-10 nodes."""
    import networkx as nx

    out = {}
    for n in range(min_nodes, max_nodes + 1):
        out[f"cycle{n}"] = nx.cycle_graph(n)
        out[f"path{n}"] = nx.path_graph(n)
        out[f"star{n}"] = nx.star_graph(n - 1)
    for a in range(2, max_nodes + 1):
        for b in range(a, max_nodes + 1):
            if min_nodes <= a * b <= max_nodes and (a, b) != (2, 2):        # the 2x2 grid is the 4-cycle
                out[f"grid{a}x{b}"] = nx.convert_node_labels_to_integers(nx.grid_2d_graph(a, b))
    return out


HELD_OUT = ("cycle7", "path6", "star8", "grid2x4")


def family_split(seed: int = 0, copies: int = 12, test_copies: int = 5) -> tuple[list, list]:
    """(train, held-out) lists of networkx graphs with shuffled node labels and a ``type`` node attribute.

    The held-out graphs are four members never seen in training (`HELD_OUT`); each training member
    appears `copies` times, each time with its nodes in another random order.
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    train, test = [], []
    for name, graph in family().items():
        for _ in range(test_copies if name in HELD_OUT else copies):
            order = rng.permutation(graph.number_of_nodes())
            g = nx.relabel_nodes(graph, {old: int(new) for old, new in zip(graph.nodes, order)})
            g = nx.Graph(sorted(g.edges))
            g.add_nodes_from(range(graph.number_of_nodes()))
            nx.set_node_attributes(g, {v: degree_type(d) for v, d in g.degree}, "type")
            g.graph["name"] = name
            (test if name in HELD_OUT else train).append(g)
    return train, test


def graphs_to_data(graphs: Sequence[Any], max_nodes: int | None = None, num_types: int = NUM_TYPES) -> dict:
    """networkx graphs (node attribute ``type`` in 0..F-1, else the degree type) -> padded arrays
    ``{"adjacency": (G, M, M), "features": (G, M, F)}``."""
    m = max_nodes or max(g.number_of_nodes() for g in graphs)
    adjacency = np.zeros((len(graphs), m, m), dtype=np.float32)
    features = np.zeros((len(graphs), m, num_types), dtype=np.float32)
    for k, g in enumerate(graphs):
        if g.number_of_nodes() > m:
            raise DataError("graphs", f"graph {k} has {g.number_of_nodes()} nodes, more than max_nodes = {m}")
        index = {v: i for i, v in enumerate(g.nodes)}
        for u, v in g.edges:
            if u != v:
                adjacency[k, index[u], index[v]] = adjacency[k, index[v], index[u]] = 1
        for v, i in index.items():
            features[k, i, g.nodes[v].get("type", degree_type(g.degree[v]))] = 1
    return {"adjacency": adjacency, "features": features}


def data_to_graphs(adjacency: Any, features: Any) -> list:
    """Padded arrays back to networkx graphs of the present nodes, with their ``type``."""
    import networkx as nx

    adjacency, features = np.asarray(adjacency), np.asarray(features)
    out = []
    for a, x in zip(adjacency, features):
        present = np.flatnonzero(x.sum(-1) > 0)
        g = nx.Graph()
        g.add_nodes_from((int(i), {"type": int(np.argmax(x[i]))}) for i in present)
        sub = a[np.ix_(present, present)]
        g.add_edges_from((int(present[i]), int(present[j])) for i, j in zip(*np.nonzero(np.triu(sub, 1))))
        out.append(g)
    return out


def default_data(seed: int = 0) -> dict:
    """The training part of `family_split`: 252 graphs of 4-10 nodes padded to 10, mini-batches of 32."""
    train, _ = family_split(seed)
    return {**graphs_to_data(train, max_nodes=10), "batch_size": 32}


# ---- reports --------------------------------------------------------------------------------------------
def _options(data: Mapping[str, Any], **overrides: Any) -> dict:
    opts = {k: option.default for k, option in SPEC.options.items()}
    opts.update({k: v for k, v in data.items() if k in SPEC.options})
    opts.update(overrides)
    return opts


def _tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.get_default_dtype())


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
    opts = _options(data, batch_size=0)
    adjacency, features = _tensor(test["adjacency"]), _tensor(test["features"])
    g, m, f = features.shape
    decoder, encoder = _nets(m, f, opts["hidden"], opts["latent_dim"])
    with torch.no_grad():
        z = encoder(features, adjacency)[0]
        type_logits, embedding = decoder.nodes(z)
        perm = match(decoder, type_logits, embedding, features, adjacency)
        type_logits, embedding = _gather_slots(type_logits, perm), _gather_slots(embedding, perm)
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
    opts = _options(data, batch_size=0, G=num)
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
