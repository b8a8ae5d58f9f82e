"""`fit`: one call runs any engine on any model and returns a `Posterior`.

    >>> from inference import fit
    >>> post = fit("coin", data={"flips": [1, 1, 1, 0], "alpha": 2.0, "beta": 2.0}, method="map", progress=False)
    >>> round(float(post.samples["p"].item()), 3)   # the Beta(5, 3) mode, 4/6
    0.667
"""

from __future__ import annotations

from typing import Any

import inspect

import pyro
import torch
from pyro import poutine
from pyro.util import get_rng_state, set_rng_state

from ppl_models.data import plain_data
from ppl_models.errors import first_line
from ppl_models.registry import resolve

from .errors import InputError
from .evidence import check_observed
from .mcmc import run_mcmc
from .optim import run_point, run_svi
from .options import BACKENDS, METHODS, OPTIONS, check_method, check_options, check_progress, check_seed, describe
from .posterior import Posterior, check_pointwise
from .predictive import sample_discrete
from .structure import _reported_input_error, inspect_model, program_failure

# The engine options are declared once, in `options`; METHODS, OPTIONS (method -> {option: default}) and
# BACKENDS stay importable from here for the code that reads them.
__all__ = ["fit", "METHODS", "OPTIONS", "BACKENDS"]


def _float_observations(fn: Any, data: dict) -> dict:
    """`data` with every integer tensor that a sample site observes, and whose distribution cannot score
    integers (Bernoulli's log-density refuses a long tensor), cast to the working float dtype.

    Integer tensors that the program only uses as indices (``a[g]``) are left as they are: only a value that
    is itself the ``obs`` of a site, and fails to score as an integer while scoring as a float, is cast.
    """
    ints = {k for k, v in data.items() if isinstance(v, torch.Tensor) and not v.is_floating_point()
            and not v.is_complex() and v.dtype != torch.bool}
    if not ints:
        return data
    try:
        with pyro.validation_enabled(False), torch.no_grad():
            trace = poutine.trace(fn).get_trace(**data)
    except Exception:  # noqa: BLE001 (inspect_model reports the failure properly)
        return data
    cast = {}
    for site in trace.nodes.values():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        key = next((k for k in ints if site["value"] is data[k]), None)
        if key is None or key in cast:
            continue
        try:
            site["fn"].log_prob(site["value"])
        except (RuntimeError, TypeError, ValueError):
            cast[key] = data[key].to(torch.get_default_dtype())
    return {**data, **cast}


def _check_structure(fn: Any, data: dict, structure: Any, method: str, settings: dict,
                     registered: str | None = None) -> None:
    """Refuse, before any optimisation or sampling, a model with nothing to infer and a user guide that
    cannot be called with the model's arguments or leaves out a latent site the model samples."""
    if not structure.latent:  # a registered model always has latent sites: then the data observed them all
        field = "model" if registered is None else "data"
        raise InputError(field, "has no latent site: every sample site is observed, nothing to infer"
                         if registered is None else f"observes every sample site of {registered}: nothing to infer")
    for name in structure.observed:  # Pyro's trace scores nothing: a misshaped observation shows only here
        site = structure.trace.nodes[name]
        value = site["value"]
        if not isinstance(value, torch.Tensor):
            continue
        expected = tuple(site["fn"].batch_shape) + tuple(site["fn"].event_shape)
        try:
            torch.broadcast_shapes(tuple(value.shape), expected)
        except RuntimeError:  # the engines would fail deep inside a log-density with a tensor-size message
            field = next((k for k, v in data.items() if v is value), name)
            raise InputError(field, f"has shape {tuple(value.shape)} but site {name!r} expects {expected} "
                                    "(its plates and distribution shape)") from None
    guide = settings.get("guide")
    if method != "svi" or not callable(guide) or isinstance(guide, str):
        return
    guide_name = getattr(guide, "__name__", type(guide).__name__)
    try:
        target = guide.forward if isinstance(guide, torch.nn.Module) else guide
        inspect.signature(target).bind(**data)
    except TypeError as exc:
        raise InputError("guide", f"cannot be called with the model's arguments ({', '.join(data)}): "
                                  f"{guide_name}: {exc}") from None
    except ValueError:  # no signature to read (a builtin): calling it below tells
        pass
    rng = get_rng_state()  # the run's random stream goes on as if the guide had not been tried
    try:
        with torch.no_grad():
            trace = poutine.trace(guide).get_trace(**data)
    except Exception as exc:  # noqa: BLE001
        reported = _reported_input_error(exc)
        if reported is not None:
            raise reported from None
        own = program_failure(exc, guide, "guide")
        if own is not None:
            raise own from exc
        raise InputError("guide", f"cannot run on this data: {first_line(exc)}") from exc
    finally:
        pyro.clear_param_store()
        set_rng_state(rng)
    sampled = {n for n, site in trace.nodes.items() if site["type"] == "sample" and not site["is_observed"]}
    needed = structure.continuous + structure.non_enumerable
    missing = [n for n in needed if n not in sampled]
    if missing:
        raise InputError("guide", f"has no site {missing[0]!r} that the model samples; a guide must sample every "
                                  f"continuous latent site of the model ({', '.join(needed)})")


def fit(model: Any, data: dict | None = None, method: str | None = None, seed: int = 0,
        progress: bool = True, pointwise: bool | str = "auto", **options: Any) -> Posterior:
    """Run one inference method on a model and return its `Posterior`.

    Args:
        model: a registered name (``"coin"``), a `ModelSpec`, or any Pyro callable taking ``**data``.
        data: the model's keyword arguments (observed fields and options); ``None`` uses the model's
            embedded default data.
        method: ``nuts``, ``hmc``, ``svi``, ``map`` or ``mle``; ``None`` uses the model's default engine
            (``nuts`` for an unregistered callable).
        seed: every random choice of the run follows from it: the same seed gives the same draws.
        progress: show progress bars.
        pointwise: whether ``Posterior.to_arviz()`` computes the per-observation groups (log_likelihood,
            posterior_predictive, prior_predictive): ``"auto"`` (default) when draws x observed values is at
            most ``inference.posterior.POINTWISE_LIMIT`` (2e7), else left out with a note; True or False.
        **options: engine options, checked for type and range before any work starts (the list below is
            written from `inference.options`, where each is declared once). ``backend="fast"`` advances
            every chain at once as one batch on a compiled potential (docs/mcmc.md); models it cannot run
            fall back to Pyro's kernels with a note.

            {options}

    Raises:
        KeyError: unknown model name (the message lists the known names).
        InputError: bad data or options, naming the field and the problem (`ppl_models.DataError`, a
            subclass, for the model's own data fields and options).
        inference.errors.ModelError: the model's or guide's own code raised (a bug in the program).
    """
    spec, fn, name = resolve(model)  # not a model at all: a DataError, which is an InputError
    method = check_method(method, spec)
    # every option is checked before any work starts (the data's conversion included)
    seed = check_seed(seed)
    progress = check_progress(progress)
    pointwise = check_pointwise(pointwise)
    settings = check_options(method, options)
    if data is None:
        if spec is None:
            raise InputError("data", "an unregistered model needs its data")
        data = spec.default_data(seed=0)
    data = spec.validate(data) if spec is not None else plain_data(fn, data)
    if method == "svi" and settings["guide"] is None:
        settings["guide"] = spec.guide if spec is not None and spec.guide is not None else "normal"

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    if spec is None:
        data = _float_observations(fn, data)
        pyro.set_rng_seed(seed)
    structure = inspect_model(fn, data)
    _check_structure(fn, data, structure, method, settings, spec.name if spec is not None else None)
    check_observed(fn, data, structure)  # impossible or unscorable observations: one line naming the field
    notes: list[str] = []
    sample_stats: dict = {}
    loss = None
    guide = None
    convergence = approximation = None
    if method in ("nuts", "hmc"):
        if structure.non_enumerable:
            raise InputError("method", f"{method} cannot handle the discrete sites {structure.non_enumerable}: "
                             "they have infinite support and cannot be enumerated")
        if structure.local:
            notes.append(f"local sites {', '.join(structure.local)} are sampled jointly with the global ones")
        params = [name for name, site in structure.trace.nodes.items() if site["type"] == "param"]
        if params:  # (Pyro's NUTS does the same, silently)
            notes.append(f"pyro.param sites {', '.join(params)} are held at their current values: {method} draws "
                         f"only sample sites (fit them with method='map' or 'mle', or make them sample sites)")
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
    else:
        if method == "svi":
            result = run_svi(fn, data, structure, progress=progress, seed=seed, **settings)
        else:
            result = run_point(fn, data, structure, method=method, progress=progress, seed=seed, **settings)
        samples, loss, notes, guide = result.draws, result.loss, result.notes, result.guide
        convergence, approximation = result.convergence, result.approximation

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
                     loss=loss, convergence=convergence, approximation=approximation, notes=notes, model=fn,
                     data=data, structure=structure, model_name=name,
                     guide=guide, param_state=pyro.get_param_store().get_state(), pointwise=pointwise)


fit.__doc__ = (fit.__doc__ or "").replace("{options}", describe(indent=" " * 12).lstrip())
