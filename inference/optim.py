"""Variational inference and point estimates: `svi`, `map` and `mle`, all built on Pyro's SVI machinery.

- ``svi``: an auto-guide (``normal`` = AutoNormal, ``mvn`` = AutoMultivariateNormal, ``delta`` = AutoDelta),
  the model's own amortized guide, or any guide callable; `Trace_ELBO`, or `TraceEnum_ELBO` when the
  model has discrete sites marked for enumeration. Posterior draws come from the fitted guide.
- ``map``: the posterior mode of the global sites (AutoDelta), by L-BFGS when the objective is exact and
  Adam when it is stochastic. ``mle`` is the same run with the prior terms of the global sites masked
  out, so MAP and MLE differ only in the prior, as the course teaches.
- Local latent sites (one per data point) are not point-estimated: discrete ones are summed out exactly
  by enumeration, continuous ones are integrated by a variational AutoNormal guide (variational EM).
  The result's notes say which.

Every loop stops at its step budget or earlier when the loss stops changing (relative change of the
mean loss between two successive windows below `tol`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pyro
import torch
import pyro.distributions as dist
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoGuideList, AutoMultivariateNormal, AutoNormal
from pyro.optim import ClippedAdam
from pyro.poutine.messenger import Messenger
from tqdm.auto import tqdm

from .errors import InputError
from .structure import ModelStructure, enumerable, full_size_plates
from .warm_start import hinted_init

AUTOGUIDES = {"normal": AutoNormal, "mvn": AutoMultivariateNormal, "delta": AutoDelta}


class IgnorePrior(Messenger):
    """Mask the log-density of the named latent sites: what is left is the likelihood alone (MLE)."""

    def __init__(self, sites):
        super().__init__()
        self.sites = set(sites)

    def _pyro_sample(self, msg):
        if msg["name"] in self.sites and not msg["is_observed"]:
            msg["mask"] = False


def _elbo(structure: ModelStructure, num_particles: int = 1):
    if structure.enumerated:
        return TraceEnum_ELBO(max_plate_nesting=structure.max_plate_nesting, num_particles=num_particles,
                              vectorize_particles=num_particles > 1)
    return Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)


def _converged(history: list[float], window: int, tol: float) -> bool:
    if tol <= 0 or len(history) < 2 * window or len(history) % window:
        return False
    recent = np.mean(history[-window:])
    before = np.mean(history[-2 * window:-window])
    return abs(recent - before) <= tol * (abs(before) + 1e-8)


def _blame_the_data(model, data, structure, history: list[float]) -> None:
    """A loss that is not finite from the first step: raise the data's fault when they are to blame."""
    if history:
        return
    from .evidence import diagnose_start

    problem = diagnose_start(model, data, structure)
    if problem is not None:
        raise problem


def _adam_loop(model, guide, data, structure, *, num_steps, lr, tol, progress, desc, num_particles=1,
               window=100) -> list[float]:
    # the learning rate decays tenfold over the budget, so the last iterates settle instead of jittering
    svi = SVI(model, guide, ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / num_steps)}), _elbo(structure, num_particles))
    history: list[float] = []
    bar = tqdm(range(num_steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        loss = svi.step(**data)
        if not np.isfinite(loss):
            _blame_the_data(model, data, structure, history)
            raise FloatingPointError(f"{desc}: the loss became {loss} at step {len(history) + 1}; "
                                     "try a smaller lr or a different initialisation")
        history.append(loss)
        if len(history) % 25 == 0:
            bar.set_postfix(loss=f"{loss:.4g}")
        if _converged(history, window, tol):
            break
    bar.close()
    return history


def _lbfgs_loop(model, guide, data, structure, *, num_steps, tol, progress, desc) -> list[float]:
    elbo = _elbo(structure)
    with torch.no_grad():
        guide(**data)  # create the guide's parameters
    params = [p for p in guide.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = elbo.differentiable_loss(model, guide, **data)
        loss.backward()
        return loss

    history: list[float] = []
    bar = tqdm(range(num_steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        loss = opt.step(closure).item()
        if not np.isfinite(loss):
            _blame_the_data(model, data, structure, history)
            raise FloatingPointError(f"{desc}: the loss became {loss}; the mode may not exist (an improper "
                                     "likelihood, e.g. separable data under MLE)")
        history.append(loss)
        if len(history) > 1 and abs(history[-2] - loss) <= max(tol, 1e-12) * (abs(loss) + 1.0):
            break
    bar.close()
    return history


def _guide_draws(guide: Callable, data: dict, structure: ModelStructure, num_samples: int,
                 sites: list[str]) -> dict[str, np.ndarray]:
    conditioned = poutine.condition(guide, structure.full_plates) if structure.full_plates else guide
    with torch.no_grad(), full_size_plates():
        try:
            draws = _unpad(Predictive(conditioned, num_samples=num_samples, return_sites=sites, parallel=True)(**data),
                           structure, num_samples)
            ok = all(draws[s].shape[1:] == structure.trace.nodes[s]["value"].shape for s in sites)
        except (RuntimeError, ValueError, IndexError):
            ok = False
        if not ok:
            draws = _unpad(Predictive(conditioned, num_samples=num_samples, return_sites=sites)(**data),
                           structure, num_samples)
    return {k: draws[k].detach().cpu().numpy()[None] for k in sites}


def _unpad(draws: dict, structure: ModelStructure, num_samples: int) -> dict:
    """Drop the singleton plate dims Predictive pads a site with when the guide has plates it lies outside
    (a Dirichlet `pi` beside a plated `theta` comes back (S, 1, K)): reshape to (S, *site shape)."""
    out = {}
    for name, value in draws.items():
        shape = tuple(structure.trace.nodes[name]["value"].shape)
        if tuple(value.shape[1:]) != shape and value.numel() == num_samples * math.prod(shape):
            value = value.reshape((num_samples,) + shape)
        out[name] = value
    return out


def run_svi(model, data, structure: ModelStructure, *, guide="normal", num_steps=2000, lr=0.01, tol=1e-4,
            num_samples=1000, num_particles=1, progress=True, seed=0):
    """Fit a guide by maximising the ELBO; return (draws (1, num_samples, ...), ELBO history, notes)."""
    notes = []
    hidden = structure.enumerated
    if isinstance(guide, str):
        if guide not in AUTOGUIDES:
            raise InputError("guide", f"unknown guide {guide!r}; choose {', '.join(AUTOGUIDES)} or pass a callable")
        if structure.non_enumerable:
            raise InputError("guide", f"discrete sites {structure.non_enumerable} cannot be enumerated; "
                             "pass a guide that samples them")
        fitted = AUTOGUIDES[guide](poutine.block(model, hide=hidden) if hidden else model,
                                   init_loc_fn=hinted_init(AUTOGUIDES[guide]))  # a model's suggested start
        notes.append(f"guide: {AUTOGUIDES[guide].__name__}")
    elif callable(guide):
        fitted = guide
        notes.append(f"guide: {getattr(guide, '__name__', type(guide).__name__)} (user guide)")
    else:
        raise InputError("guide", "must be 'normal', 'mvn', 'delta' or a callable")
    if hidden:
        notes.append(f"discrete sites {', '.join(hidden)} summed out by enumeration (TraceEnum_ELBO)")
    history = _adam_loop(enumerable(model), fitted, data, structure, num_steps=num_steps, lr=lr, tol=tol,
                         progress=progress, desc="svi", num_particles=num_particles)
    sites = [s for s in structure.continuous + structure.non_enumerable]
    draws = _guide_draws(fitted, data, structure, num_samples, sites) if sites else {}
    return draws, np.asarray(history), notes, fitted


def _has_laplace_terms(structure: ModelStructure, sites: list[str]) -> bool:
    """Whether the objective has Laplace terms (lasso priors, absolute-error likelihoods): their kinks at
    zero stall L-BFGS's line search, which then stops early at a wrong point without complaint."""
    for name in sites:
        fn = structure.trace.nodes[name]["fn"]
        while hasattr(fn, "base_dist"):
            fn = fn.base_dist
        if isinstance(fn, dist.Laplace):
            return True
    return False


def run_point(model, data, structure: ModelStructure, *, method: str, optimizer: str | None = None,
              num_steps: int | None = None, lr: float = 0.05, tol: float | None = None, progress=True,
              seed=0):
    """MAP or MLE of the global sites; return (estimates (1, 1, ...), loss history, notes, guide)."""
    notes = []
    if structure.non_enumerable:
        raise InputError("method", f"discrete sites {structure.non_enumerable} cannot be enumerated, so "
                         f"{method} cannot integrate them out")
    target = IgnorePrior(structure.global_)(model) if method == "mle" else model
    if method == "mle":
        notes.append("MLE: the prior terms of " + (", ".join(structure.global_) or "no site") +
                     " are masked out; the objective is the likelihood alone")
    hidden = structure.enumerated + structure.local
    delta = AutoDelta(poutine.block(target, hide=hidden) if hidden else target,
                      init_loc_fn=hinted_init(AutoDelta))  # a model's suggested start (warm_start.init_to_hint)
    if structure.local:
        guide = AutoGuideList(target)
        guide.append(delta)
        guide.append(AutoNormal(poutine.block(target, expose=structure.local)))
        notes.append(f"local sites {', '.join(structure.local)} integrated out by a variational AutoNormal "
                     "guide (variational EM); the objective is an ELBO")
    else:
        guide = delta
    if structure.enumerated:
        notes.append(f"discrete sites {', '.join(structure.enumerated)} summed out exactly by enumeration; "
                     "their reported values are the most probable assignment given the estimate")
    stochastic = bool(structure.local)
    scored = structure.observed + (structure.global_ if method == "map" else [])
    kinked = _has_laplace_terms(structure, scored)
    optimizer = optimizer or ("adam" if stochastic or kinked else "lbfgs")
    if kinked and optimizer == "adam":
        notes.append("Laplace terms in the objective: Adam (with a decaying step) rather than L-BFGS, whose "
                     "line search stalls at their kinks; estimates meant to be exactly zero come out near zero")
    if optimizer not in ("adam", "lbfgs"):
        raise InputError("optimizer", f"must be 'adam' or 'lbfgs', got {optimizer!r}")
    if optimizer == "lbfgs" and stochastic:
        raise InputError("optimizer", "L-BFGS needs an exact objective; this model's local sites make it "
                         "stochastic; use 'adam'")
    notes.append(f"optimizer: {optimizer}")
    if optimizer == "lbfgs":
        history = _lbfgs_loop(enumerable(target), guide, data, structure, num_steps=num_steps or 200,
                              tol=1e-10 if tol is None else tol, progress=progress, desc=method)
    else:
        history = _adam_loop(enumerable(target), guide, data, structure, num_steps=num_steps or 3000, lr=lr,
                             tol=1e-6 if tol is None else tol, progress=progress, desc=method)
    with torch.no_grad():
        point = delta.median(**data) if structure.global_ else {}
        estimates = {k: v.detach().cpu().numpy()[None, None] for k, v in point.items()}
        if structure.local:
            local_guide = guide[1]
            local = local_guide.median(**data)
            estimates.update({k: v.detach().cpu().numpy()[None, None] for k, v in local.items()})
    return estimates, np.asarray(history), notes, guide


def param_store_reset() -> None:
    pyro.clear_param_store()
