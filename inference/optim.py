"""Variational inference and point estimates: `svi`, `map` and `mle`, all built on Pyro's SVI machinery.

- ``svi``: an auto-guide (``normal`` = AutoNormal, ``mvn`` = AutoMultivariateNormal, ``delta`` = AutoDelta),
  the model's own amortized guide, or any guide callable; `Trace_ELBO`, or `TraceEnum_ELBO` when the
  model has discrete sites marked for enumeration. Posterior draws come from the fitted guide.
- ``map``: the posterior mode of the global sites (AutoDelta), by L-BFGS when the objective is exact and
  Adam when it is stochastic. ``mle`` is the same run with the prior terms of the global sites masked
  out, so MAP and MLE differ only in the prior, as the course teaches.
- Local latent sites (one per data point) are not point-estimated: discrete ones are summed out exactly
  by enumeration, continuous ones are integrated by a variational AutoNormal guide (variational EM),
  then polished by L-BFGS on the ELBO with fixed particles. The result's notes say which.

Adam runs until its loss is flat and its parameters stop drifting, then settles at a tenth of the step
with its iterates averaged (`_adam_loop`); L-BFGS until its own test fires. The step budget is a ceiling.
Every run says why it stopped and how far from its optimum it may be (`convergence.Convergence`), and
SVI and MAP how good their approximation of the posterior is (`approximation.Approximation`, Pareto k).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pyro
import torch
import pyro.distributions as dist
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal
from pyro.optim import ClippedAdam
from pyro.util import get_rng_state, set_rng_state
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from ppl_models.errors import first_line

from .approximation import NUM_DRAWS, Approximation, guide_approximation, laplace_approximation
from .convergence import MIN_WINDOW, Convergence, Iterates, Trend, loss_trend
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


def _elbo(structure: ModelStructure, num_particles: int = 1, vectorise: bool = True):
    vectorise = vectorise and num_particles > 1
    if structure.enumerated:
        return TraceEnum_ELBO(max_plate_nesting=structure.max_plate_nesting, num_particles=num_particles,
                              vectorize_particles=vectorise)
    if vectorise:
        return Trace_ELBO(num_particles=num_particles, vectorize_particles=True,
                          max_plate_nesting=structure.max_plate_nesting)
    return Trace_ELBO(num_particles=num_particles)


# particles of a fixed-particle objective: vectorised where the program broadcasts over a particle plate, else
# one trace each (Pyro's examples index and multiply latent values in ways a particle dimension breaks)
PARTICLE_PLANS = ((True, None), (False, 32))


def _broadcasts_over_particles(model, guide, data: dict, structure: ModelStructure, particles: int = 3) -> bool:
    """Whether the program computes one value per particle under a particle plate, as vectorised ELBO
    particles need. Checked with identical particles: the guide's draw of one trace, copied along the
    particle dimension, must give `particles` times that trace's log-densities. A program that broadcasts
    its own dimensions against the particle dimension (eight schools as Pyro's example writes it, with no
    plate) gave a loss of 31,479 where one particle at a time gives 54, without an error."""
    if structure.enumerated:
        return False  # (enumerated programs take the traced path)
    plate = pyro.plate("_particles", particles, dim=-(structure.max_plate_nesting + 1))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            guide_one = poutine.trace(guide).get_trace(**data)
            model_one = poutine.trace(poutine.replay(model, trace=guide_one)).get_trace(**data)
            with plate:
                copies = poutine.trace(guide).get_trace(**data)
            for name, site in copies.nodes.items():
                if site["type"] == "sample":
                    site["value"] = guide_one.nodes[name]["value"].expand(site["value"].shape)
            with plate:
                guide_many = poutine.trace(poutine.replay(guide, trace=copies)).get_trace(**data)
                model_many = poutine.trace(poutine.replay(model, trace=guide_many)).get_trace(**data)
            one = float(guide_one.log_prob_sum() - model_one.log_prob_sum())
            many = float(guide_many.log_prob_sum() - model_many.log_prob_sum())
    except Exception:  # noqa: BLE001
        return False
    return math.isfinite(one) and abs(many - particles * one) <= 1e-3 * (abs(particles * one) + 1.0)


def _with_particles(structure: ModelStructure, particles: int, run: Callable[[Any], Any],
                    vectorisable: bool = True) -> Any:
    """`run(elbo)` with `particles` vectorised particles where the program broadcasts over them
    (`vectorisable`, see `_broadcasts_over_particles`), else with fewer particles, one trace each; the
    last failure propagates."""
    plans = PARTICLE_PLANS if vectorisable else PARTICLE_PLANS[1:]
    for i, (vectorise, cap) in enumerate(plans):
        try:
            return run(_elbo(structure, particles if cap is None else min(particles, cap), vectorise))
        except Exception:  # noqa: BLE001
            if i == len(plans) - 1:
                raise


CHECK_EVERY = 50  # steps between two tests of the loss's trend
SETTLE_FACTOR = 10.0  # the step size of the settling phase is the initial one divided by this
SETTLE_AT = 0.8  # a run the budget stops settles over the budget's last fifth


def _blame_the_data(model, data, structure, history: list[float]) -> None:
    """A loss that is not finite from the first step: raise the data's fault when they are to blame."""
    if history:
        return
    from .evidence import diagnose_start

    problem = diagnose_start(model, data, structure)
    if problem is not None:
        raise problem


class _Average:
    """The running mean of an autoguide's own parameters (locations, scales, point estimates) since the
    first `add`; `apply` puts it in place. A user's guide and network weights are left as the last step
    left them: averaging weights across a phase in which a network still learns is another method (SWA)."""

    def __init__(self, guide: Any):
        self.guide = guide if isinstance(guide, AutoGuide) else None
        self.params: dict[str, torch.Tensor] = {}
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def add(self) -> None:
        if self.guide is None:
            return
        if not self.params:  # (an autoguide makes its parameters at its first call)
            self.params = dict(self.guide.named_parameters())
        self.count += 1
        for name, value in self.params.items():
            value = value.detach()
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()

    def apply(self) -> None:
        if not self.count:
            return
        with torch.no_grad():
            for name, value in self.params.items():
                value.copy_(self.sums[name] / self.count)


def _variational_parameters(guide) -> list[tuple[str, np.ndarray]]:
    """An autoguide's own parameters (locations, scales, point estimates), by name; a user's guide (an
    encoder network) gives none: networks are judged by their loss alone."""
    if not isinstance(guide, AutoGuide):
        return []
    return [(name, p.detach().cpu().numpy()) for name, p in guide.named_parameters()]


GAP_PARTICLES = 1000  # particles of the loss estimates that test whether a run ended at its optimum
GAP_STEPS = (0.01, 0.03, 0.1, 0.3, 1.0)  # trial steps along the gradient: the largest parameter change


def objective_gap(model, guide, data, structure: ModelStructure, seed: int,
                  particles: int = GAP_PARTICLES) -> float | None:
    """How much the loss still falls along its gradient at the end of a run, in nats (None: not measured).

    The gradient of the loss with respect to an autoguide's parameters is estimated from `particles`
    particles; steps along it that change no parameter by more than 0.01 ... 1 are scored on two other
    sets of particles, each against the loss at the end on the same particles (common random numbers,
    so the comparison's noise is far below either loss's). The gain is the better step's smaller gain
    over the two sets. A run at its objective's optimum gains nothing; one stopped on its way gains. (A run
    stuck in a curved valley may gain nothing along the gradient: MAP's variational EM is polished by
    `_polish` for that reason.) A user's guide (an encoder network) is not tested."""
    if not isinstance(guide, AutoGuide):
        return None
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        return None
    state = get_rng_state()
    start = [p.detach().clone() for p in params]

    def measure(elbo) -> float:
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(model, guide, **data)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
        largest = max(float(g.abs().max()) for g in grads)
        if largest == 0.0:
            return 0.0
        if not math.isfinite(largest):
            raise FloatingPointError("the gradient is not finite")

        def loss_on(particles_seed: int) -> float:
            pyro.set_rng_seed(particles_seed)
            with torch.no_grad():
                return float(elbo.loss(model, guide, **data))

        seeds = (seed + 1, seed + 2)
        base = [loss_on(s) for s in seeds]
        best = 0.0
        for size in GAP_STEPS:
            with torch.no_grad():
                for p, p0, g in zip(params, start, grads):
                    p.copy_(p0 - size / largest * g)
            gain = min(b - loss_on(s) for b, s in zip(base, seeds))
            if math.isfinite(gain):
                best = max(best, gain)
        _restore(params, start)
        return best

    try:
        with poutine.block(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vectorisable = _broadcasts_over_particles(model, guide, data, structure)
            return _with_particles(structure, particles, measure, vectorisable)
    except Exception:  # noqa: BLE001 (not measurable on this program: the record says None)
        return None
    finally:
        _restore(params, start)
        set_rng_state(state)


def _restore(params: list, values: list) -> None:
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)


POLISH_PARTICLES = 256
POLISH_ITERATIONS = 100


def _polish(model, guide, data, structure: ModelStructure, seed: int) -> tuple[list[float], bool]:
    """L-BFGS on the ELBO with its particles held fixed (common random numbers make it a deterministic
    function of the parameters: a sample-average approximation), from where Adam stopped.

    Why: with continuous local latents, a MAP's objective is an ELBO, and its optimum can lie along a valley
    that stochastic steps crawl along: on the centred eight schools, variational EM by Adam stalls at tau 1.7,
    0.23 nats short of its objective's optimum (tau -> 0, checked with scipy), while L-BFGS on 256 fixed
    particles reaches it in ten iterations. Returns the losses and whether the polish ran."""
    params = [p for p in guide.parameters() if p.requires_grad]
    if not params:
        return [], False
    start = [p.detach().clone() for p in params]
    state = get_rng_state()
    history: list[float] = []

    def run(elbo) -> list[float]:
        history.clear()
        _restore(params, start)
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            pyro.set_rng_seed(seed + 7919)  # the same particles at every evaluation
            loss = elbo.differentiable_loss(model, guide, **data)
            loss.backward()
            return loss

        for _ in range(POLISH_ITERATIONS):
            loss = opt.step(closure).item()
            if not math.isfinite(loss):
                raise FloatingPointError("the fixed-particle loss became infinite")
            history.append(loss)
            if len(history) > 1 and abs(history[-2] - loss) <= 1e-10 * (abs(loss) + 1.0):
                break
        return history

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vectorisable = _broadcasts_over_particles(model, guide, data, structure)
            return list(_with_particles(structure, POLISH_PARTICLES, run, vectorisable)), True
    except Exception:  # noqa: BLE001 (the Adam estimate stands; the gap test says whether it is good)
        _restore(params, start)
        return [], False
    finally:
        set_rng_state(state)


def _adam_loop(model, guide, data, structure, *, num_steps, lr, tol, progress, desc, method, num_particles=1):
    """Adam in two phases, each ended by the loss going flat (`convergence.loss_trend` over the phase's
    last half), or the budget.

    Explore: Adam at `lr` until the loss stops falling and the parameters stop drifting (their iterates'
    split R-hat, `convergence.Iterates`). Settle: Adam at lr / `SETTLE_FACTOR` (a fresh
    optimiser state) for at least a quarter of the exploration (and `MIN_WINDOW` steps), the parameters
    averaged over the phase (Polyak averaging: the noise of single-particle gradients averages out instead
    of leaving the estimate wherever the last step put it), until the loss is flat again. A run whose
    exploration reaches four fifths of the budget settles over the last fifth (then whether the parameters
    were still drifting is judged where exploration ended); ``tol=0`` runs the whole budget that way.
    Returns the loss history and the `Convergence` record (its `gap` is the caller's to measure, once the
    estimate is final: `objective_gap`)."""
    elbo = _elbo(structure, num_particles)
    svi = SVI(model, guide, ClippedAdam({"lr": lr}), elbo)
    history: list[float] = []
    last_fifth = int(num_steps * SETTLE_AT)
    settle_from = None
    settle_min = 0
    drifting: tuple = ()
    forced = False
    average, iterates = _Average(guide), Iterates()
    stopped_by = "budget"
    bar = tqdm(range(num_steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        if settle_from is None and step == last_fifth and step > 0:  # the budget binds: settle over its end
            settle_from, forced = step, True
            drifting = tuple(iterates.drifting()) if tol > 0 else ()
        if settle_from is not None and step == settle_from:
            svi = SVI(model, guide, ClippedAdam({"lr": lr / SETTLE_FACTOR}), elbo)
        try:
            loss = svi.step(**data)
        except (ValueError, RuntimeError) as exc:
            if not history or not _non_finite_parameters(exc):
                raise
            loss = math.nan
        if not np.isfinite(loss):
            _blame_the_data(model, data, structure, history)
            raise FloatingPointError(f"{desc}: the loss became {loss} at step {len(history) + 1}; "
                                     "try a smaller lr or a different initialisation")
        history.append(loss)
        if settle_from is not None and step >= settle_from:
            average.add()
        elif tol > 0:
            iterates.add(_variational_parameters(guide))
        if len(history) % 25 == 0:
            bar.set_postfix(loss=f"{loss:.4g}")
        if tol > 0 and not forced and len(history) % CHECK_EVERY == 0:
            phase = history[settle_from:] if settle_from is not None else history
            if len(phase) >= max(2 * MIN_WINDOW, settle_min) and not loss_trend(phase).falling(tol) \
                    and (settle_from is not None or not iterates.drifting()):
                if settle_from is not None:
                    stopped_by = "flat"
                    _finish_bar(bar, len(history), "flat")
                    break
                settle_from, settle_min = step + 1, len(history) // 4
    bar.close()
    average.apply()
    if forced:  # whether exploration had converged when the budget made it settle
        phase = history[:settle_from]
    else:
        phase = history[settle_from:] if settle_from is not None and len(history) - settle_from >= 3 else history
    trend = loss_trend(phase)
    return history, Convergence(method, stopped_by, len(history), num_steps, trend.level, trend, tol, drifting=drifting)


def _finish_bar(bar, steps: int, why: str) -> None:
    """A run that stops before its budget ends its bar at 100 % and says why (not "1% 2/200")."""
    bar.total = bar.n = steps
    bar.set_postfix_str(f"stopped: {why}", refresh=False)
    bar.refresh()


def _non_finite_parameters(exc: BaseException) -> bool:
    """Whether `exc` is a distribution refusing non-finite parameters (the optimiser's, not the data's)."""
    text = str(exc)
    return "nan" in text.lower() and ("Expected parameter" in text or "invalid values" in text)


def _lbfgs_loop(model, guide, data, structure, *, num_steps, tol, progress, desc, method):
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
    stopped_by = "budget"
    bar = tqdm(range(num_steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        try:
            loss = opt.step(closure).item()
        except (ValueError, RuntimeError) as exc:  # a distribution refusing the parameters the line search tried
            if not _non_finite_parameters(exc):
                raise
            loss = math.nan
        if not np.isfinite(loss):
            _blame_the_data(model, data, structure, history)
            raise FloatingPointError(
                f"{desc}: the estimate ran off to the edge of the parameter space (the loss became {loss}): the "
                "mode does not exist inside it; a density unbounded at its edge (a Dirichlet or Beta prior with a "
                "concentration below 1, a scale going to 0) or separable data under MLE; use method='nuts'")
        history.append(loss)
        if len(history) > 1 and abs(history[-2] - loss) <= max(tol, 1e-12) * (abs(loss) + 1.0):
            stopped_by = "optimiser"
            _finish_bar(bar, len(history), "converged")
            break
    bar.close()
    # an exact loss, no noise: the trend is the last step's change (L-BFGS reports the loss each step started from)
    with torch.no_grad():
        final = float(elbo.loss(model, guide, **data))
    trend = Trend(1, final - history[-1], 0.0, final)
    return history, Convergence(method, stopped_by, len(history), num_steps, final, trend, max(tol, 1e-12))


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


@dataclass
class OptimResult:
    """What SVI, MAP and MLE hand back to `fit`.

    Attributes:
        draws: site -> array (1, draws, ...): the guide's draws (SVI) or the estimate (MAP/MLE, one draw).
        loss: the loss per step; convergence: why the run stopped and the loss's trend at the end.
        approximation: the PSIS diagnostic of the guide (SVI) or of the Laplace approximation at the MAP,
            or None (with the reason in `notes`).
        notes: what the engine did that a reader should know; guide: the fitted guide.
    """

    draws: dict[str, np.ndarray]
    loss: np.ndarray
    convergence: Convergence
    approximation: Approximation | None
    notes: list[str]
    guide: Any


class ImplicitEvents(Messenger):
    """A continuous site outside every plate whose distribution has batch dimensions
    (``HalfCauchy(torch.ones(d))``, as Pyro's examples/lkj.py writes it) is one variable of d components:
    declare its batch dimensions an event (``.to_event``), as `Trace_ELBO`'s shape check wants. Which sites
    and how many dimensions is read from the program's own trace (`ModelStructure`), so that dimensions a
    particle plate adds on the left stay batch dimensions. Sites in plates, and discrete sites (which
    enumeration needs as they are), are left alone."""

    def __init__(self, structure: ModelStructure):
        super().__init__()
        self.dims = {}
        for name, site in structure.trace.nodes.items():
            fn = site.get("fn")
            if (site["type"] != "sample" or site["cond_indep_stack"] or site_is_subsample(site)
                    or not getattr(fn, "batch_shape", None) or getattr(fn, "has_enumerate_support", False)):
                continue
            self.dims[name] = len(fn.batch_shape)

    def _pyro_sample(self, msg):
        dims = self.dims.get(msg["name"])
        if dims and len(getattr(msg["fn"], "batch_shape", ())) >= dims:
            msg["fn"] = msg["fn"].to_event(dims)


def _approximation_or_note(compute: Callable, notes: list[str]) -> Approximation | None:
    """Run a PSIS diagnostic; a failure is one note, never the fit's failure."""
    try:
        approximation = compute()
    except Exception as exc:  # noqa: BLE001 (the estimate stands; the note says what could not be checked)
        notes.append(f"Pareto k not computed: {first_line(exc)[:160]}")
        return None
    if approximation is not None:
        notes.append(approximation.describe())
    return approximation


def default_lr(structure: ModelStructure, guide: Any) -> float:
    """Adam's initial step size when the user gives none: 0.1 for an autoguide's location and scale
    parameters, 0.01 where neural network weights are trained too (the model registers pyro.param or
    pyro.module sites, or brings its own guide), which a large step throws off."""
    networks = any(site["type"] == "param" for site in structure.trace.nodes.values())
    return 0.01 if networks or not isinstance(guide, str) else 0.1


def run_svi(model, data, structure: ModelStructure, *, guide="normal", num_steps=10000, lr=None, tol=1e-4,
            num_samples=1000, num_particles=1, reweight=False, progress=True, seed=0) -> OptimResult:
    """Fit a guide by maximising the ELBO; its draws (1, num_samples, ...), convergence and Pareto k."""
    notes = []
    hidden = structure.enumerated
    program = ImplicitEvents(structure)(model)
    if isinstance(guide, str):
        if guide not in AUTOGUIDES:
            raise InputError("guide", f"unknown guide {guide!r}; choose {', '.join(AUTOGUIDES)} or pass a callable")
        if structure.non_enumerable:
            raise InputError("guide", f"discrete sites {structure.non_enumerable} cannot be enumerated; "
                             "pass a guide that samples them")
        fitted = AUTOGUIDES[guide](poutine.block(program, hide=hidden) if hidden else program,
                                   init_loc_fn=hinted_init(AUTOGUIDES[guide]))  # a model's suggested start
        guide_name = AUTOGUIDES[guide].__name__
        notes.append(f"guide: {guide_name}")
    elif callable(guide):
        fitted = guide
        guide_name = getattr(guide, "__name__", type(guide).__name__)
        notes.append(f"guide: {guide_name} (user guide)")
    else:
        raise InputError("guide", "must be 'normal', 'mvn', 'delta' or a callable")
    if hidden:
        notes.append(f"discrete sites {', '.join(hidden)} summed out by enumeration (TraceEnum_ELBO)")
    lr = default_lr(structure, guide) if lr is None else lr
    history, convergence = _adam_loop(enumerable(program), fitted, data, structure, num_steps=num_steps, lr=lr,
                                      tol=tol, progress=progress, desc="svi", method="svi",
                                      num_particles=num_particles)
    convergence = replace(convergence, gap=objective_gap(enumerable(program), fitted, data, structure, seed))
    notes.append(convergence.describe())
    sites = [s for s in structure.continuous + structure.non_enumerable]
    approximation = None
    if guide == "delta":
        notes.append("Pareto k not computed: a delta guide is a point, not a distribution")
    elif structure.non_enumerable:
        notes.append("Pareto k not computed: the guide samples discrete sites the density cannot sum out")
    elif sites:
        approximation = _approximation_or_note(lambda: guide_approximation(
            model, fitted, data, structure, guide_name, num_draws=max(NUM_DRAWS, num_samples if reweight else 0)),
            notes)
    if reweight and approximation is not None:
        resampled = approximation.resample(num_samples, np.random.default_rng(seed))
        draws = {k: v[None] for k, v in resampled.items()}
        notes.append(f"reweight=True: the {num_samples} draws are resampled from {approximation.num_draws} draws of "
                     "the guide by their Pareto-smoothed importance weights")
    else:
        draws = _guide_draws(fitted, data, structure, num_samples, sites) if sites else {}
    return OptimResult(draws, np.asarray(history), convergence, approximation, notes, fitted)


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
              num_steps: int | None = None, lr: float | None = None, tol: float | None = None, progress=True,
              seed=0):
    """MAP or MLE of the global sites: the estimate (1, 1, ...), why the run stopped (with the Newton decrement
    where the curvature is known) and, for MAP, the Pareto k of the Laplace approximation there."""
    notes = []
    if structure.non_enumerable:
        raise InputError("method", f"discrete sites {structure.non_enumerable} cannot be enumerated, so "
                         f"{method} cannot integrate them out")
    target = ImplicitEvents(structure)(IgnorePrior(structure.global_)(model) if method == "mle" else model)
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
    program = enumerable(target)
    if optimizer == "lbfgs":
        history, convergence = _lbfgs_loop(program, guide, data, structure, num_steps=num_steps or 200,
                                           tol=1e-10 if tol is None else tol, progress=progress, desc=method,
                                           method=method)
    else:
        lr = default_lr(structure, "auto") if lr is None else lr
        history, convergence = _adam_loop(program, guide, data, structure, num_steps=num_steps or 10000, lr=lr,
                                          tol=1e-6 if tol is None else tol, progress=progress, desc=method,
                                          method=method)
        if structure.local:
            polished, ran = _polish(program, guide, data, structure, seed)
            if ran:
                notes.append(f"then L-BFGS on the ELBO with {POLISH_PARTICLES} fixed particles ({len(polished)} "
                             "iterations): stochastic steps crawl along its valleys")
                settled = len(polished) < POLISH_ITERATIONS  # (L-BFGS's own test ended it)
                convergence = replace(convergence, drifting=() if settled else convergence.drifting,
                                      stopped_by="optimiser" if settled else convergence.stopped_by)
        convergence = replace(convergence, gap=objective_gap(program, guide, data, structure, seed))
    with torch.no_grad():
        point = delta.median(**data) if structure.global_ else {}
        estimates = {k: v.detach().cpu().numpy()[None, None] for k, v in point.items()}
        if structure.local:
            local_guide = guide[1]
            local = local_guide.median(**data)
            estimates.update({k: v.detach().cpu().numpy()[None, None] for k, v in local.items()})
    approximation, later = None, []
    if structure.local:
        later.append("Pareto k not computed: the local sites are integrated by a variational guide, so there is no "
                     "Laplace approximation of the estimate alone")
    elif structure.global_:
        estimate = {k: v[0, 0] for k, v in estimates.items()}
        approximation, facts = _laplace_or_note(target, data, structure, estimate, method, seed, later)
        if facts.get("newton_decrement") is not None:
            convergence = replace(convergence, grad_norm=facts["grad_norm"],
                                  newton_decrement=facts["newton_decrement"])
    notes.append(convergence.describe())
    notes.extend(later)
    return OptimResult(estimates, np.asarray(history), convergence, approximation, notes, guide)


def _laplace_or_note(target, data, structure, estimate, method, seed, notes) -> tuple[Approximation | None, dict]:
    """The Laplace approximation's PSIS diagnostic (MAP) and the curvature facts (MAP and MLE); what could
    not be done is one note."""
    facts: dict = {}

    def compute():
        approximation, found = laplace_approximation(target, data, structure, estimate, seed=seed,
                                                     psis=method == "map")
        facts.update(found)
        if approximation is None and method == "map":
            notes.append(f"Pareto k of the Laplace approximation not computed: {found.get('why', 'unknown')}")
        return approximation

    return _approximation_or_note(compute, notes), facts


def param_store_reset() -> None:
    pyro.clear_param_store()
