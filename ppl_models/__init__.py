"""The model zoo: each model is a plain Pyro program with plate notation, registered with a `ModelSpec`.

    >>> import ppl_models
    >>> spec = ppl_models.get("coin")
    >>> sorted(spec.default_data(seed=0))
    ['alpha', 'beta', 'flips']

This package knows nothing of inference engines or drawing. Importing it imports pyro, torch, numpy and
scipy (the exact posteriors of `coin` and `two_class`, `gmm`'s responsibilities, the ranks behind the
link-prediction AUC, and the Hungarian algorithm inside the `graph_vae` program). Some functions import
more when called: networkx (the graph data and measures of `graph_vae` and `vgae`), scikit-learn (the
`vae`'s digits, `gmm`'s k-means starts) and pgmpy (`bayes_net.from_pgmpy`, an optional extra).
"""

from .data import DataError, Field, Option
from .errors import InputError
from .registry import ALL_ENGINES, ModelSpec, get, names, register, resolve

__all__ = ["ModelSpec", "Field", "Option", "DataError", "InputError", "get", "names", "register", "resolve", "ALL_ENGINES"]
