"""The pieces the GraphVAE program is built from: two distributions over padded graphs, the networks, and
the graph matcher.

- `NodeTypes`: one categorical per node slot over {empty, type 1..F}; `with_empty` adds the "empty" column.
- `Adjacency`: a symmetric 0/1 adjacency with independent Bernoulli edges between present slots.
- `Decoder` (theta: z -> slot types, slot embeddings, edge logits) and `Encoder` (phi: message passing with
  a permutation-invariant readout -> q(z | X, A)); `networks` returns both, registered with Pyro.
- `match`: the permutation of an input graph's nodes onto the decoder's slots (graduated assignment, then
  the Hungarian algorithm, scipy's ``linear_sum_assignment``); `gather_slots` applies it.

Example:
    >>> import torch
    >>> from ppl_models.graph_vae.parts import Adjacency, NodeTypes
    >>> x = NodeTypes(torch.zeros(3, 5)).sample()           # 3 slots, types {empty, 1..4}
    >>> x.shape, Adjacency(torch.zeros(3, 3), x.sum(-1)).sample().shape
    (torch.Size([3, 4]), torch.Size([3, 3]))
"""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from scipy.optimize import linear_sum_assignment
from torch import nn

from .._nets import bound_module, mlp

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
class Encoder(nn.Module):
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


class Decoder(nn.Module):
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


def networks(max_nodes: int, num_types: int, hidden: int, latent_dim: int) -> tuple[Decoder, Encoder]:
    """(decoder theta, encoder phi), registered with Pyro as ``graph_vae_decoder`` (model parameters) and
    ``graph_vae_encoder`` (guide parameters): the trained networks while the param store holds them."""
    return (bound_module("graph_vae_decoder", (max_nodes, num_types, hidden, latent_dim),
                         lambda: Decoder(max_nodes, num_types, hidden, latent_dim)),
            bound_module("graph_vae_encoder", (num_types, hidden, latent_dim),
                         lambda: Encoder(num_types, hidden, latent_dim)))


# ---- matching -------------------------------------------------------------------------------------------
def gather_slots(values: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
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
