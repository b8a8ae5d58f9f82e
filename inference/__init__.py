"""Inference engines behind one call: `fit(model, data, method)` -> `Posterior` -> ArviZ.

    >>> from inference import fit
    >>> post = fit("coin", method="nuts", num_chains=2, num_samples=200, num_warmup=200, progress=False)
    >>> idata = post.to_arviz()          # posterior, sample_stats, log_likelihood, ... for az.summary/az.loo

Engines know Pyro and never a concrete model: they read each program's structure from its trace.
"""

import warnings

# ArviZ 0.x announces its 1.0 refactor on import; the suite pins arviz<1, so the notice is noise here.
warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor", category=FutureWarning)

from .api import METHODS, OPTIONS, fit
from .compare import Comparison, compare
from .errors import InputError
from .posterior import Posterior

__all__ = ["fit", "compare", "Comparison", "Posterior", "InputError", "METHODS", "OPTIONS"]
