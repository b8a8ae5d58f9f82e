"""`fit`: one call runs any engine on any model and returns a `Posterior`.

    >>> from inference import fit
    >>> post = fit("coin", data={"flips": [1, 1, 1, 0], "alpha": 2.0, "beta": 2.0}, method="map", progress=False)
    >>> round(float(post.samples["p"].item()), 3)   # the Beta(5, 3) mode, 4/6
    0.667
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyro

from ppl_models.data import DataError, plain_data
from ppl_models.registry import resolve

from .errors import InputError
from .mcmc import run_mcmc
from .optim import run_point, run_svi
from .posterior import Posterior
from .predictive import sample_discrete
from .structure import inspect_model

METHODS = ("nuts", "hmc", "svi", "map", "mle")

_MCMC_OPTIONS = {"num_chains": 4, "num_samples": 1000, "num_warmup": 1000, "target_accept": 0.8,
                 "max_tree_depth": 10, "full_mass": None, "jit_compile": False, "step_size": 1.0,
                 "trajectory_length": None, "backend": "fast", "warm_start": True}
BACKENDS = ("fast", "pyro")
OPTIONS = {
    "nuts": {k: v for k, v in _MCMC_OPTIONS.items() if k != "trajectory_length"},
    "hmc": {k: v for k, v in _MCMC_OPTIONS.items() if k != "max_tree_depth"},
    "svi": {"guide": None, "num_steps": 2000, "lr": 0.01, "tol": 1e-4, "num_samples": 1000, "num_particles": 1},
    "map": {"optimizer": None, "num_steps": None, "lr": 0.05, "tol": None},
    "mle": {"optimizer": None, "num_steps": None, "lr": 0.05, "tol": None},
}
_POSITIVE_INTS = ("num_chains", "num_samples", "num_steps", "num_particles", "max_tree_depth")


def _check_options(method: str, options: dict) -> dict:
    allowed = OPTIONS[method]
    for key, value in options.items():
        if key not in allowed:
            raise InputError(key, f"is not an option of method {method!r}; its options are "
                             f"{', '.join(sorted(allowed))}, progress")
        if key in _POSITIVE_INTS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(key, f"must be a positive whole number, got {value!r}")
        if key == "num_warmup" and (not isinstance(value, (int, np.integer)) or value < 0):
            raise InputError(key, f"must be a non-negative whole number, got {value!r}")
        if key in ("warm_start", "jit_compile") and not isinstance(value, (bool, np.bool_)):
            raise InputError(key, f"must be True or False, got {value!r}")
        if key == "full_mass" and value is not None and not isinstance(value, (bool, np.bool_)):
            raise InputError(key, "must be True, False or None (None: dense for 2-10 correlated dimensions), "
                                  f"got {value!r}")
        if key == "backend" and value not in BACKENDS:
            raise InputError(key, f"unknown backend {value!r}; choose one of {', '.join(BACKENDS)}")
        if key in ("lr", "target_accept", "step_size") and not (isinstance(value, (int, float)) and value > 0):
            raise InputError(key, f"must be a positive number, got {value!r}")
    return {**allowed, **options}


def fit(model: Any, data: dict | None = None, method: str | None = None, seed: int = 0,
        progress: bool = True, **options: Any) -> Posterior:
    """Run one inference method on a model and return its `Posterior`.

    Args:
        model: a registered name (``"coin"``), a `ModelSpec`, or any Pyro callable taking ``**data``.
        data: the model's keyword arguments (observed fields and options); ``None`` uses the model's
            embedded default data.
        method: ``nuts``, ``hmc``, ``svi``, ``map`` or ``mle``; ``None`` uses the model's default engine
            (``nuts`` for an unregistered callable).
        seed: every random choice of the run follows from it: the same seed gives the same draws.
        progress: show progress bars.
        **options: engine options. MCMC: ``num_chains`` (4), ``num_samples`` (1000), ``num_warmup``
            (1000), ``target_accept`` (0.8), ``max_tree_depth`` (10, NUTS), ``full_mass`` (None: dense up to 10
            unconstrained dimensions on the fast backend, else diagonal; True/False to choose),
            ``warm_start`` (True: the fast backend's warm-up starts from the curvature at the mode),
            ``jit_compile`` (False, Pyro backend), ``step_size`` (initial), ``trajectory_length`` (HMC, 2 pi),
            ``backend``: ``"fast"`` (default: every chain advanced at once as one batch on a compiled
            potential, see docs/mcmc.md; enumerated discrete sites are summed out per chain; models it
            cannot run, such as ones that do not broadcast over an outer plate, fall back to Pyro with a note) or ``"pyro"`` (Pyro's own NUTS/HMC kernels, one chain
            after another).
            SVI: ``guide`` (``normal``, ``mvn``, ``delta`` or a callable; default the model's own guide,
            else ``normal``), ``num_steps`` (2000), ``lr`` (0.01), ``tol`` (1e-4, relative change of the
            windowed mean loss that stops early), ``num_samples`` (1000 draws from the guide),
            ``num_particles`` (1). MAP/MLE: ``optimizer`` (``lbfgs`` or ``adam``), ``num_steps``,
            ``lr``, ``tol``.

    Raises:
        KeyError: unknown model name (the message lists the known names).
        ppl_models.DataError / InputError: bad data or options, naming the field and the problem.
    """
    try:
        spec, fn, name = resolve(model)
    except DataError as exc:  # not a model at all: this package's own error type
        raise InputError(exc.field, exc.problem) from None
    if method is None:
        method = spec.default_method if spec is not None else "nuts"
    if method not in METHODS:
        raise InputError("method", f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if spec is not None and method not in spec.engines:
        raise InputError("method", f"{method!r} does not apply to model {spec.name!r}; "
                         f"it supports {', '.join(spec.engines)}")
    if data is None:
        if spec is None:
            raise InputError("data", "an unregistered model needs its data")
        data = spec.default_data(seed=0)
    data = spec.validate(data) if spec is not None else plain_data(fn, data)
    settings = _check_options(method, options)
    if method == "svi" and settings["guide"] is None:
        settings["guide"] = spec.guide if spec is not None and spec.guide is not None else "normal"

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    structure = inspect_model(fn, data)
    notes: list[str] = []
    sample_stats: dict = {}
    loss = None
    guide = None
    if method in ("nuts", "hmc"):
        if structure.non_enumerable:
            raise InputError("method", f"{method} cannot handle the discrete sites {structure.non_enumerable}: "
                             "they have infinite support and cannot be enumerated")
        if structure.local:
            notes.append(f"local sites {', '.join(structure.local)} are sampled jointly with the global ones")
        if structure.continuous:
            samples, sample_stats, backend_notes = run_mcmc(fn, data, structure, method=method, seed=seed,
                                                            progress=progress, **settings)
            notes.extend(backend_notes)
        else:
            samples = {}
            notes.append("no continuous latent sites: draws come from the exact posterior by enumeration")
    elif structure.enumerated and not structure.continuous and not structure.non_enumerable:
        # every latent site is summed out exactly: there is nothing for a guide or an optimiser to fit
        samples = {}
        notes.append("no continuous latent sites: nothing to optimise; " + (
            "draws come from the exact posterior by enumeration" if method == "svi" else
            "the estimate is the jointly most probable assignment of the discrete sites"))
    elif method == "svi":
        samples, loss, notes, guide = run_svi(fn, data, structure, progress=progress, seed=seed, **settings)
    else:
        samples, loss, notes, guide = run_point(fn, data, structure, method=method, progress=progress,
                                                seed=seed, **settings)

    if structure.enumerated:
        pyro.set_rng_seed(seed)
        temperature = 0 if method in ("map", "mle") else 1
        if samples:
            samples.update(sample_discrete(fn, data, structure, samples, temperature=temperature))
        else:
            shape = (settings.get("num_chains", 1), settings.get("num_samples", 1))
            if method in ("map", "mle"):
                shape = (1, 1)
            samples = sample_discrete(fn, data, structure, {}, chain_draw=shape, temperature=temperature)
    samples = {k: samples[k] for k in structure.latent if k in samples}
    return Posterior(samples=samples, method=method, settings={"seed": seed, **settings}, sample_stats=sample_stats,
                     loss=loss, notes=notes, model=fn, data=data, structure=structure, model_name=name,
                     guide=guide, param_state=pyro.get_param_store().get_state())
