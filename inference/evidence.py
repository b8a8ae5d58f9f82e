"""Is the observed data possible under the model at all? Checked once before any engine runs, and asked
again when an engine cannot find a starting point.

Why: every engine answers *something* when the data are impossible. Exact enumeration of a Bayesian network
with evidence of probability zero normalises 0/0 into an invented posterior; the batched NUTS backend
evaluates log-densities without Pyro's argument checks, so ``y = 2`` under a Bernoulli scores
``2 log p - log(1 - p)`` and is sampled happily; Pyro's own kernels say "cannot find valid initial params"
and the optimisers "the loss became nan". None of those says what is wrong. Here the data are checked where
the answer is certain, and the user is told which field is at fault and why:

- NaN or an infinite value among a site's observations;
- an observation outside its distribution's support (``y = 2`` for a Bernoulli, a Beta observation of 1.5),
  confirmed at several prior draws when the support could depend on a latent value (``Uniform(0, theta)``);
- a model whose latent sites are all discrete and enumerable: log p(data) by exact enumeration (Pyro's
  tensor variable elimination, as its NUTS sums enumerated sites out) is ``-inf``;
- observations so large that the log density overflows at every prior draw (``y = 1e308``).

`diagnose_start` is the after-the-fact question for the engines: when no finite starting point was found,
which observed site has a non-finite log-density at every prior draw tried, and where.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.poutine.util import site_is_subsample

from .errors import InputError
from .structure import ModelStructure, enumerable

PRIOR_DRAWS = 8        # prior draws at which a suspicious site is re-evaluated before the data are blamed
HUGE = 1e30            # observations beyond this magnitude are named as the cause of an overflow

__all__ = ["check_observed", "diagnose_start", "ZeroProbability"]


class ZeroProbability(InputError):
    """The observed data have probability zero under the model (an `InputError`: the input is at fault)."""


# ---- small helpers ---------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{float(x):g}"


def _field(name: str, value: torch.Tensor, data: dict) -> str:
    """The data key the site observes (the user's name for it), else the site's name."""
    for key, v in data.items():
        if v is value:
            return key
    return name


def _index(mask: torch.Tensor) -> str:
    """The first True position of `mask` as ``3`` or ``(3, 1)`` ("" for a scalar or no True)."""
    if mask.dim() == 0 or not bool(mask.any()):
        return ""
    where = torch.nonzero(mask)[0].tolist()
    return str(where[0]) if len(where) == 1 else "(" + ", ".join(map(str, where)) + ")"


def _at(mask: torch.Tensor) -> str:
    idx = _index(mask)
    return f" (first at index {idx})" if idx else ""


def _support_text(support: Any) -> str:
    """A constraint in words: the values a distribution can take."""
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    if base is constraints.boolean:
        return "0 or 1"
    if base is constraints.nonnegative_integer:
        return "whole numbers 0, 1, 2, ..."
    if base is constraints.positive_integer:
        return "whole numbers 1, 2, 3, ..."
    if base is constraints.positive:
        return "positive numbers"
    if base is constraints.nonnegative:
        return "non-negative numbers"
    if base is constraints.unit_interval:
        return "numbers between 0 and 1"
    if base is constraints.simplex:
        return "probability vectors (non-negative, summing to 1)"
    if isinstance(base, constraints.integer_interval):
        lo, hi = base.lower_bound, base.upper_bound
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return f"whole numbers {_num(lo)} to {_num(hi)}"
        return "whole numbers in a bounded range"
    if isinstance(base, (constraints.interval, constraints.half_open_interval)):
        lo, hi = base.lower_bound, base.upper_bound
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return f"numbers between {_num(lo)} and {_num(hi)}"
    if isinstance(base, constraints.greater_than) and isinstance(base.lower_bound, (int, float)):
        return f"numbers above {_num(base.lower_bound)}"
    if isinstance(base, (constraints.interval, constraints.half_open_interval, constraints.integer_interval)):
        lo, hi = torch.as_tensor(base.lower_bound), torch.as_tensor(base.upper_bound)
        if lo.numel() == 1 and hi.numel() == 1:
            return f"between {_num(lo)} and {_num(hi)} at that draw"
        return "an interval set by the model's parameters"
    return type(base).__name__.lstrip("_")


def _innermost(fn: Any) -> Any:
    """The distribution inside its wrappers (Independent, Masked, Expanded)."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _dist_name(fn: Any) -> str:
    return type(_innermost(fn)).__name__


def _first_bad(value: torch.Tensor, bad: torch.Tensor) -> str:
    """'2 (first at index 3)': the first offending value and where it is."""
    text = "a value"
    if tuple(value.shape[:bad.dim()]) == tuple(bad.shape):
        first = value[bad].reshape(-1)
        if first.numel() and value.dim() == bad.dim():
            text = _num(first[0])
    elif bad.dim() == 0 and value.numel() == 1:
        text = _num(value.reshape(-1)[0])
    return text + _at(bad)


def _prior_traces(model: Callable, data: dict, n: int):
    """Up to `n` traces of the model at fresh prior draws (draws whose trace fails are skipped); the global
    random state is restored afterwards, so checking does not change the run's draws."""
    state = pyro.util.get_rng_state()
    try:
        for _ in range(n):
            try:
                with torch.no_grad(), pyro.validation_enabled(False), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    yield poutine.trace(model).get_trace(**data)
            except Exception:  # noqa: BLE001 (a prior draw where the model's arithmetic fails)
                continue
    finally:
        pyro.util.set_rng_state(state)


def _observed_sites(trace) -> list[tuple[str, dict]]:
    return [(name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site)
            and not site["infer"].get("_deterministic") and _dist_name(site["fn"]) != "Unit"]  # (not pyro.factor)


def _live(site: dict, bad: torch.Tensor) -> torch.Tensor:
    """`bad` restricted to the observations that count: entries masked out (``poutine.mask``, a masked
    distribution, ``obs_mask``) may hold anything, NaN included."""
    masks = [site.get("mask")]
    fn = site["fn"]
    while hasattr(fn, "base_dist"):
        masks.append(getattr(fn, "_mask", None))
        fn = fn.base_dist
    for mask in masks:
        if isinstance(mask, torch.Tensor):
            try:
                bad = bad & mask.bool()
            except RuntimeError:
                pass
        elif mask is False:
            return torch.zeros_like(bad)
    return bad


def _opted_out(fn: Any) -> bool:
    """Whether the model built the distribution with ``validate_args=False`` on purpose (a Bernoulli as the
    cross-entropy of grey levels): its support is then not a statement about the data. (Only meaningful
    in the structure's trace, which runs with validation on: there the default is True.)"""
    while fn is not None:
        if getattr(fn, "_validate_args", None) is False:
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def _out_of_support(site: dict) -> torch.Tensor | None:
    """Batch-shaped mask of observations outside the site's support (None when it cannot be checked)."""
    fn, value = site["fn"], site["value"]
    support = getattr(fn, "support", None)
    if support is None or not isinstance(value, torch.Tensor) or support is constraints.real:
        return None
    try:
        ok = support.check(value)
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return None
    if not isinstance(ok, torch.Tensor):
        return None
    return _live(site, ~ok.bool())


# ---- the check before any engine runs -------------------------------------------------------------------
def check_observed(model: Callable, data: dict, structure: ModelStructure) -> None:
    """Raise `ZeroProbability` (an `InputError`, naming the data field) when the observed data are impossible
    under the model or cannot be scored: NaN or infinite observations, observations outside their
    distribution's support, an all-discrete model whose exact log marginal is -inf, or values so large
    that the log density overflows at every prior draw."""
    trace = structure.trace
    suspects: list[str] = []
    for name, site in _observed_sites(trace):
        value = site["value"]
        if not isinstance(value, torch.Tensor):
            continue
        field = _field(name, value, data)
        if value.is_floating_point():
            batch = value.dim() - site["fn"].event_dim
            nan = _live(site, torch.isnan(value).reshape(value.shape[:batch] + (-1,)).any(-1)
                        if site["fn"].event_dim else torch.isnan(value))
            if bool(nan.any()):
                raise ZeroProbability(field, f"contains NaN{_at(nan)}: the model cannot score a missing value")
            inf = _live(site, torch.isinf(value).reshape(value.shape[:batch] + (-1,)).any(-1)
                        if site["fn"].event_dim else torch.isinf(value))
            if bool(inf.any()):
                raise ZeroProbability(field, f"contains an infinite value{_at(inf)}")
        bad = None if _opted_out(site["fn"]) else _out_of_support(site)
        if bad is not None and bool(bad.any()):
            _confirm_support(model, data, name, field, site, bad)
        suspects.append(name)
    if not structure.continuous and structure.enumerated and not structure.non_enumerable:
        _check_exact_marginal(model, data, structure)
        return
    # a log-density that is not finite at the structure's prior draw: is it so at every draw tried?
    if any(bool(bad.any()) for bad in (_site_bad(trace.nodes[n]) for n in suspects) if bad is not None):
        error = diagnose_start(model, data, structure)
        if error is not None:
            raise error


def _support_moves(fn: Any) -> bool:
    """Whether a distribution's support is computed from its parameters (``Uniform(0, theta)``) rather than
    fixed by its family (Bernoulli's {0, 1}, Beta's (0, 1)); wrappers (Independent, Masked, Expanded) are
    looked through."""
    return isinstance(inspect.getattr_static(type(_innermost(fn)), "support", None), property)


def _confirm_support(model: Callable, data: dict, name: str, field: str, site: dict, bad: torch.Tensor) -> None:
    """Raise unless some prior draw puts these observations inside the support (a support that depends on
    a latent value, like Uniform(0, theta), is not violated by one unlucky draw)."""
    varies = False
    count = 1
    supports = {repr(site["fn"].support)}
    for trace in _prior_traces(model, data, PRIOR_DRAWS):
        other = trace.nodes.get(name)
        if other is None:
            continue
        count += 1
        again = _out_of_support(other)
        if again is None or not bool(again.any()):
            return
        varies = varies or again.shape != bad.shape or not torch.equal(again, bad)
        supports.add(repr(other["fn"].support))
    what = f"{_first_bad(site['value'], bad)} is outside the support of the {_dist_name(site['fn'])} at site {name!r}"
    # the support moves with the latent values (Uniform(0, theta)); a Categorical's is computed from its
    # parameters too, but from their shape (the number of categories), the same at every draw
    if varies or (_support_moves(site["fn"]) and len(supports) > 1):
        raise ZeroProbability(field, f"no starting point found: {what} at each of {count} prior draws tried, so the "
                              "data are impossible or nearly so under the prior; check the data, or widen the prior")
    what += f" ({_support_text(site['fn'].support)})"
    raise ZeroProbability(field, f"the data have probability zero under the model: {what}")


def log_marginal(model: Callable, data: dict, structure: ModelStructure) -> float:
    """log p(data) of a model whose latent sites are all enumerated discrete ones, summed out exactly by
    Pyro's tensor variable elimination (`TraceEinsumEvaluator`, as Pyro's NUTS marginalises)."""
    from pyro.infer.mcmc.util import TraceEinsumEvaluator

    nesting = structure.max_plate_nesting
    enum_model = poutine.enum(enumerable(model), first_available_dim=-(nesting + 1))
    if structure.full_plates:
        enum_model = poutine.condition(enum_model, structure.full_plates)
    with torch.no_grad(), pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trace = poutine.trace(enum_model).get_trace(**data)
        value = TraceEinsumEvaluator(trace, True, nesting).log_prob(trace)
    return float(value)


def _check_exact_marginal(model: Callable, data: dict, structure: ModelStructure) -> None:
    try:
        value = log_marginal(model, data, structure)
    except Exception:  # noqa: BLE001 (a model the evaluator cannot contract: the engines will say so)
        return
    if not math.isfinite(value):
        hidden = ", ".join(structure.enumerated)
        raise ZeroProbability("data", f"the observed data have probability zero under the model (summed exactly "
                              f"over every value of the discrete sites {hidden}, log p(data) = {_num(value)})")


def _site_bad(site: dict) -> torch.Tensor | None:
    """Mask of observations whose log-density is not finite; under enumeration an observation is bad only
    if it is bad for every value of the enumerated sites (their dimensions are left of the batch dims)."""
    try:
        lp = site["fn"].log_prob(site["value"])
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(lp, torch.Tensor):
        return None
    bad = ~torch.isfinite(lp)
    batch = site["value"].dim() - site["fn"].event_dim
    extra = bad.dim() - max(batch, 0)
    if extra > 0:
        bad = bad.reshape((-1,) + bad.shape[extra:]).all(0)
    return bad


# ---- after an engine found no starting point -------------------------------------------------------------
def diagnose_start(model: Callable, data: dict, structure: ModelStructure, tries: int = PRIOR_DRAWS
                   ) -> InputError | None:
    """Why no starting point has a finite log density, when the observed data are the reason: an
    `InputError` naming the first observed site whose log-density is not finite at every prior draw tried
    (with the first index), or whose huge values overflow it; ``None`` when no observed site is to blame."""
    nesting = structure.max_plate_nesting
    traced = enumerable(model)
    if structure.enumerated:
        traced = poutine.enum(traced, first_available_dim=-(nesting + 1))
    if structure.full_plates:
        traced = poutine.condition(traced, structure.full_plates)
    always_bad: dict[str, tuple[torch.Tensor, dict]] | None = None
    count = 0
    for trace in _prior_traces(traced, data, tries):
        count += 1
        bad_now = {}
        for name, site in _observed_sites(trace):
            bad = _site_bad(site)
            if bad is not None and bool(bad.any()):
                bad_now[name] = (bad, site)
        if always_bad is None:
            always_bad = bad_now
        else:
            always_bad = {k: v for k, v in always_bad.items() if k in bad_now}
        if not always_bad:
            return None
    if not count or not always_bad:
        return None
    name, (bad, site) = next(iter(always_bad.items()))
    value = site["value"]
    field = _field(name, structure.trace.nodes[name]["value"] if name in structure.trace.nodes else value, data)
    huge = _huge_field(data, field, value)
    if huge is not None:
        return ZeroProbability(huge[0], f"values up to {_num(huge[1])} make the model's log density overflow at "
                               "every starting point tried; rescale the data")
    where = _index(bad)
    return ZeroProbability(field, f"the data have probability zero under the model at every starting point tried "
                           f"({count} prior draws; site {name!r}{', first at index ' + where if where else ''})")


def _huge_field(data: dict, field: str, value: torch.Tensor) -> tuple[str, float] | None:
    """(field, largest magnitude) of the observed value, else of any data input, beyond `HUGE`."""
    candidates = [(field, value)] + [(k, v) for k, v in data.items() if k != field]
    for key, v in candidates:
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel():
            largest = float(v.detach().abs().max())
            if largest >= HUGE:
                return key, largest
    return None
