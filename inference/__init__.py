"""Inference engines behind one call: `fit(model, data, method)` -> `Posterior` -> ArviZ.

    >>> from inference import fit
    >>> post = fit("coin", method="nuts", num_chains=2, num_samples=200, num_warmup=200, progress=False)
    >>> idata = post.to_arviz()          # posterior, sample_stats, log_likelihood, ... for az.summary/az.loo

Engines know Pyro and never a concrete model: they read each program's structure from its trace.
"""

import warnings

# ArviZ 0.x announces its 1.0 refactor on its first import of the day; the suite works with 0.x and 1.x alike
# (inference/arviz_compat.py), so the notice is noise here (1.x has no such notice). Only that one warning is
# ignored (it starts with a newline, hence the \s*), and only while ArviZ is imported: the filter is taken
# out again afterwards. (Not `catch_warnings()`, which would also drop the filters SciPy and the other
# libraries ArviZ imports install for themselves.)
_count = len(warnings.filters)
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
_notice = warnings.filters[0] if len(warnings.filters) > _count else None  # None: the caller had it already
try:
    import arviz  # noqa: F401
finally:
    if _notice is not None and _notice in warnings.filters:
        warnings.filters.remove(_notice)
    del _count, _notice

from .api import METHODS, OPTIONS, fit
from .compare import Comparison, compare
from .errors import InputError
from .executors import fit_many
from .posterior import Posterior
from .sbc import SBCResult, sbc

__all__ = ["fit", "compare", "Comparison", "sbc", "SBCResult", "fit_many", "Posterior", "InputError", "METHODS", "OPTIONS"]
