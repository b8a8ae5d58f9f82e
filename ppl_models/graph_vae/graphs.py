"""GraphVAE's data: a family of small graphs (cycles, paths, stars and 2-D grids of 4-10 nodes, node type =
degree 1, 2, 3, 4+), its train/held-out split, and the conversion between networkx graphs and the padded
arrays the program takes: ``adjacency`` (G, M, M) symmetric 0/1 with a zero diagonal and ``features``
(G, M, F) one-hot node types with all-zero rows for empty slots.

Example:
    >>> from ppl_models.graph_vae.graphs import data_to_graphs, family_split, graphs_to_data
    >>> train, test = family_split(seed=0)
    >>> len(train), len(test), sorted({g.graph["name"] for g in test})
    (252, 20, ['cycle7', 'grid2x4', 'path6', 'star8'])
    >>> data = graphs_to_data(test, max_nodes=10)
    >>> data["adjacency"].shape, data["features"].shape, len(data_to_graphs(**data))
    ((20, 10, 10), (20, 10, 4), 20)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data import DataError

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
