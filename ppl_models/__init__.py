"""The model zoo: each model is a plain Pyro program with plate notation, registered with a `ModelSpec`.

    >>> import ppl_models
    >>> spec = ppl_models.get("coin")
    >>> sorted(spec.default_data(seed=0))
    ['alpha', 'beta', 'flips']

This package knows nothing of inference engines or drawing: its models import pyro, torch and numpy;
data generation and the models' own measures also use scipy, networkx and scikit-learn (its digits,
k-means starts), and `bayes_net.from_pgmpy` pgmpy when it is installed.
"""

from .data import DataError, Field, Option
from .registry import ALL_ENGINES, ModelSpec, get, names, register, resolve

__all__ = ["ModelSpec", "Field", "Option", "DataError", "get", "names", "register", "resolve", "ALL_ENGINES"]
