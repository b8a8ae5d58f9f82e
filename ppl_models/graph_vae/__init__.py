"""GraphVAE: one graph-level latent z, node types and edges from a decoder, Hungarian matching.

The model lives in four modules; this package exports the public names of all of them:

- `model`: the generative story (its docstring), the Pyro program `graph_vae`, its guide
  `graph_vae_guide` and the registration `SPEC`;
- `parts`: what the program is built from: the distributions `NodeTypes` and `Adjacency`, the networks
  (`Decoder`, `Encoder`, `networks`) and the graph matcher (`match`, `gather_slots`);
- `graphs`: the data: the graph family (`family`, `family_split`, `HELD_OUT`, `degree_type`), the
  conversions `graphs_to_data` / `data_to_graphs` and `default_data`;
- `evaluation`: reconstruction and generation reports, the Erdos-Renyi and block-model baselines, graph
  metrics.

Example:
    >>> from ppl_models import graph_vae
    >>> train, test = graph_vae.family_split(seed=0)
    >>> data = graph_vae.graphs_to_data(train, max_nodes=10)
    >>> graph_vae.SPEC.validate(data)["adjacency"].shape
    torch.Size([252, 10, 10])
"""

from .evaluation import (edge_rate, family_member, generation_report, graph_statistics, mmd,
                         reconstruction_report, sample_block_model, sample_erdos_renyi, sample_graphs)
from .graphs import (HELD_OUT, NUM_TYPES, data_to_graphs, default_data, degree_type, family, family_split,
                     graphs_to_data)
from .model import SPEC, graph_vae, graph_vae_guide
from .parts import (MATCH_ROUNDS, Adjacency, Decoder, Encoder, NodeTypes, gather_slots, match, networks,
                    with_empty)

__all__ = [
    "SPEC", "graph_vae", "graph_vae_guide",
    "Adjacency", "NodeTypes", "with_empty", "Decoder", "Encoder", "networks", "match", "gather_slots",
    "MATCH_ROUNDS",
    "HELD_OUT", "NUM_TYPES", "family", "family_split", "degree_type", "graphs_to_data", "data_to_graphs",
    "default_data",
    "reconstruction_report", "generation_report", "graph_statistics", "sample_graphs", "sample_erdos_renyi",
    "sample_block_model", "family_member", "mmd", "edge_rate",
]
