"""The model zoo: each model is a plain Pyro program with plate notation, registered with a `ModelSpec`.

    >>> import ppl_models
    >>> spec = ppl_models.get("coin")
    >>> sorted(spec.default_data(seed=0))
    ['alpha', 'beta', 'flips']

This package imports only pyro, torch and numpy: it knows nothing of inference engines or drawing.
"""

from .data import DataError, Field, Option
from .registry import ALL_ENGINES, ModelSpec, get, names, register, resolve

__all__ = ["ModelSpec", "Field", "Option", "DataError", "get", "names", "register", "resolve", "ALL_ENGINES"]
