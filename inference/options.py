"""The engine options of `fit`, declared once: type, default, bounds, the methods they apply to, help.

Why a table: the checks, the defaults (`inference.OPTIONS`), the `fit` docstring and the CLI help all
read the same declaration, so they cannot drift apart. Every option is checked for type and range
before any work starts, so a typo (``num_warmup=1000000000``, ``target_accept=1.5``, ``tol="x"``) is
one `InputError` naming the option and the problem instead of a 400-hour run or a traceback after it.

The upper bounds are deliberately generous (no sensible run comes near them); each message says why
the bound exists.

    >>> check_options("nuts", {"num_samples": 200})["num_samples"]
    200
    >>> check_options("nuts", {"num_warmup": True})
    Traceback (most recent call last):
    ...
    inference.errors.InputError: num_warmup: must be a whole number, got True
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ppl_models.data import show_value

from .errors import InputError
from .fast import ADAPTATIONS, BATCHINGS, COMPILERS  # (the wing declares its own choices; validated here)

METHODS = ("nuts", "hmc", "svi", "map", "mle")
MCMC = ("nuts", "hmc")
BACKENDS = ("fast", "pyro")
GUIDES = ("normal", "mvn", "delta")
OPTIMIZERS = ("lbfgs", "adam")

SEED_MAX = 2**32 - 1  # NumPy's seed range: every engine's generator accepts any seed in [0, SEED_MAX]

_DAYS = "a larger run would take days; run several shorter ones with different seeds and pool the draws"


@dataclass(frozen=True)
class EngineOption:
    """One engine option of `fit`.

    Attributes:
        name: the keyword argument.
        kind: ``int``, ``float``, ``bool`` or ``choice`` (a string among `choices`, or a callable when
            `callable_ok`).
        defaults: method -> default value; its keys are the methods the option applies to.
        help: one line for the docstring and the CLI help.
        low, high: bounds of a number (``None``: unbounded on that side).
        low_open, high_open: whether the bound itself is excluded.
        none_ok: ``None`` is accepted (it means "choose for me", see `help`).
        choices: the allowed strings of a ``choice`` option.
        callable_ok: a callable is accepted too (a user guide).
        why_high: why the upper bound exists, said in the message when it is exceeded.
    """

    name: str
    kind: str
    defaults: Mapping[str, Any]
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    none_ok: bool = False
    choices: tuple[str, ...] = ()
    callable_ok: bool = False
    why_high: str = ""

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if m in self.defaults)

    def range_text(self) -> str:
        """The allowed values in words, e.g. ``in (0, 1)`` or ``1 to 64``."""
        if self.kind == "bool":
            return "True or False" + (" or None" if self.none_ok else "")
        if self.kind == "choice":
            names = [repr(c) for c in self.choices] + (["a callable"] if self.callable_ok else [])
            return ", ".join(names) + (" or None" if self.none_ok else "")
        text = self._number_range()
        return text + " or None" if self.none_ok else text

    def _number_range(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            if self.kind == "int" and not self.low_open and not self.high_open:
                return f"{_num(lo)} to {_num(hi)}"
            return f"in {'(' if self.low_open else '['}{_num(lo)}, {_num(hi)}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {_num(hi)}"
        return "any number"

    def check(self, value: Any) -> Any:
        """The value, converted to a plain Python type; `InputError` when it has the wrong type or range."""
        if value is None:
            if self.none_ok:
                return None
            raise InputError(self.name, f"must be {self._what()}, got None")
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise InputError(self.name, f"must be True or False{' or None' if self.none_ok else ''}, "
                                        f"got {show_value(value)}")
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            if self.callable_ok and callable(value) and not isinstance(value, str):
                return value
            raise InputError(self.name, f"must be {self.range_text()}, got {show_value(value)}")
        if self.kind == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                shown = f"{float(value)!r} (a float)" if real else show_value(value)
                raise InputError(self.name, f"must be a whole number, got {shown}")
            number: float = int(value)
        else:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise InputError(self.name, f"must be {self._what()}, got {show_value(value)}")
            number = float(value)
            if not math.isfinite(number):
                raise InputError(self.name, f"must be a finite number, got {show_value(value)}")
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            raise InputError(self.name, f"must be {self.range_text()}, got {show_value(number)}")
        if self.high is not None and (number >= self.high if self.high_open else number > self.high):
            why = f" ({self.why_high})" if self.why_high else ""
            bound = f"at most {_num(self.high)}" if not self.high_open else f"below {_num(self.high)}"
            if self.kind != "int" and self.low is not None:  # (0, 1) reads better whole
                bound = self._number_range()
            raise InputError(self.name, f"must be {bound}{why}, got {show_value(number)}")
        return number

    def _what(self) -> str:
        if self.kind == "int":
            return "a whole number"
        if self.kind == "float":
            if self.low == 0 and self.low_open:
                return "a positive number"
            if self.low == 0:
                return "a non-negative number"
            return "a number"
        return self.range_text()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _all(methods: tuple[str, ...], default: Any) -> dict[str, Any]:
    return {m: default for m in methods}


ENGINE_OPTIONS: tuple[EngineOption, ...] = (
    EngineOption("num_chains", "int", _all(MCMC, 4), "independent chains (R-hat compares them)",
                 low=1, high=64, why_high="64 chains already estimate R-hat well; more only multiply the run time"),
    EngineOption("num_samples", "int", _all(MCMC + ("svi",), 1000),
                 "draws kept per chain (SVI: draws from the fitted guide)",
                 low=1, high=10**6, why_high=_DAYS),
    EngineOption("num_warmup", "int", _all(MCMC, 1000), "adaptation draws per chain, discarded",
                 low=0, high=10**6, why_high=_DAYS),
    EngineOption("target_accept", "float", _all(MCMC, 0.8), "the step-size adaptation's target acceptance rate",
                 low=0, high=1, low_open=True, high_open=True),
    EngineOption("max_tree_depth", "int", {"nuts": 10}, "NUTS tree depth limit (2**depth leapfrog steps)",
                 low=1, high=15, why_high="a tree of depth 15 is already 32768 leapfrog steps per draw"),
    EngineOption("full_mass", "bool", _all(MCMC, None),
                 "dense mass matrix; None: dense for 2-10 unconstrained dimensions on the fast backend",
                 none_ok=True),
    EngineOption("jit_compile", "bool", _all(MCMC, False), "JIT-compile the potential (Pyro backend)"),
    EngineOption("step_size", "float", _all(MCMC, 1.0), "initial leapfrog step size (then adapted)",
                 low=0, high=1e3, low_open=True, why_high="the step size is adapted from here; "
                 "a start this large only wastes warm-up"),
    EngineOption("trajectory_length", "float", {"hmc": None}, "HMC trajectory length; None: 2 pi",
                 low=0, high=1e3, low_open=True, none_ok=True,
                 why_high="longer trajectories cost more leapfrog steps per draw than any posterior needs"),
    EngineOption("backend", "choice", _all(MCMC, "fast"),
                 "'fast' (every chain at once on a compiled potential) or 'pyro' (Pyro's kernels)",
                 choices=BACKENDS),
    EngineOption("warm_start", "bool", _all(MCMC, True),
                 "the fast backend's warm-up starts from the curvature at the mode"),
    EngineOption("adaptation", "choice", _all(MCMC, "pooled"),
                 "the fast backend's warm-up: 'pooled' (one step size and metric for all chains, estimated from "
                 "all of them), 'pooled metric' (one metric, a step size per chain: funnels), 'per chain' (each "
                 "chain its own, as Stan)", choices=ADAPTATIONS),
    EngineOption("batching", "choice", _all(MCMC, "auto"),
                 "how the fast backend batches the chains: 'vectorised' (one chain's potential, vmapped: any "
                 "program), 'chain plate' (an outer plate: programs that broadcast); 'auto': the plate where it works",
                 choices=BATCHINGS),
    EngineOption("compiler", "choice", _all(MCMC, "auto"),
                 "what compiles the fast backend's leapfrog step: 'torchscript', 'inductor' (AOTInductor: a "
                 "C++ compiler and 10-35 s per model, cached), 'python' (neither); 'auto': TorchScript where "
                 "torch has it, moved to AOTInductor after 10 or 30 transitions where the run is long enough to pay "
                 "for the compile", choices=COMPILERS),
    EngineOption("guide", "choice", {"svi": None},
                 "'normal', 'mvn', 'delta' or a guide callable; None: the model's own guide, else 'normal'",
                 choices=GUIDES, callable_ok=True, none_ok=True),
    EngineOption("num_steps", "int", {"svi": 10000, "map": None, "mle": None},
                 "the step budget, a ceiling: runs stop earlier when the loss goes flat (MAP/MLE default: 200 "
                 "L-BFGS or 10000 Adam steps)",
                 low=1, high=10**7, none_ok=True,
                 why_high="more steps would take days; if the loss is still falling, a larger lr gets there sooner"),
    EngineOption("lr", "float", {"svi": None, "map": None, "mle": None},
                 "Adam's initial step size, divided by 10 for the settling phase; None: 0.1, or 0.01 where "
                 "network weights are trained too", none_ok=True,
                 low=0, high=10, low_open=True, why_high="a larger Adam step diverges"),
    EngineOption("tol", "float", {"svi": 1e-4, "map": None, "mle": None},
                 "the loss is flat when, over the last half of a phase, it falls by less than twice its noise "
                 "and less than tol of its level; 0: run the whole budget",
                 low=0, high=1, high_open=True, none_ok=True),
    EngineOption("num_particles", "int", {"svi": 1}, "ELBO particles per step",
                 low=1, high=10**4, why_high="more particles cost memory and time for no useful gain in the gradient"),
    EngineOption("reweight", "bool", {"svi": False},
                 "resample the guide's draws by their Pareto-smoothed importance weights (PSIS)"),
    EngineOption("optimizer", "choice", {"map": None, "mle": None},
                 "'lbfgs' or 'adam'; None: L-BFGS for exact objectives, Adam otherwise",
                 choices=OPTIMIZERS, none_ok=True),
)

BY_NAME: dict[str, EngineOption] = {o.name: o for o in ENGINE_OPTIONS}


def defaults(method: str) -> dict[str, Any]:
    """Option name -> default for one method, in declaration order."""
    return {o.name: o.defaults[method] for o in ENGINE_OPTIONS if method in o.defaults}


OPTIONS: dict[str, dict[str, Any]] = {m: defaults(m) for m in METHODS}


def check_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of `method` with its default, overridden by `options` once each value is checked.

    Raises `InputError(option, problem)` for an option the method does not take, a value of the wrong
    type (bool is not a number; NumPy scalars are numbers) or out of its range.
    """
    allowed = OPTIONS[method]
    settings = dict(allowed)
    for key, value in options.items():
        if key not in allowed:
            others = [m for m in METHODS if key in OPTIONS[m]]
            hint = f" (it applies to {', '.join(others)})" if others else ""
            raise InputError(str(key), f"is not an option of method {method!r}{hint}; its options are "
                                       f"{', '.join(sorted(allowed))}, progress")
        settings[key] = BY_NAME[key].check(value)
    return settings


def check_method(method: Any, spec: Any = None) -> str:
    """`method` checked against `METHODS` and, for a registered model (`spec`, a `ppl_models.ModelSpec`),
    against the engines it supports; None picks the model's default (NUTS for a user's program).

    Raises `InputError("method", ...)` naming the choices.
    """
    if method is None:
        return spec.default_method if spec is not None else "nuts"
    if not isinstance(method, str) or method not in METHODS:
        raise InputError("method", f"unknown method {show_value(method)}; choose one of {', '.join(METHODS)}")
    if spec is not None and method not in spec.engines:
        raise InputError("method", f"{method!r} does not apply to model {spec.name!r}; "
                                   f"it supports {', '.join(spec.engines)}")
    return method


def check_seed(seed: Any) -> int:
    """`seed` as an int in [0, 2**32 - 1] (NumPy's seed range); `InputError("seed", ...)` otherwise."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise InputError("seed", f"must be a whole number from 0 to {SEED_MAX}, got {show_value(seed)}")
    if not 0 <= int(seed) <= SEED_MAX:
        raise InputError("seed", f"must be from 0 to {SEED_MAX} (NumPy's seed range), got {int(seed)}")
    return int(seed)


def check_progress(progress: Any) -> bool:
    """`progress` as a bool; `InputError("progress", ...)` for anything else."""
    if isinstance(progress, (bool, np.bool_)):
        return bool(progress)
    raise InputError("progress", f"must be True or False, got {show_value(progress)}")


def describe(methods: tuple[str, ...] = METHODS, indent: str = "") -> str:
    """The options of `methods` as text, one line each: name (defaults per method): help; range."""
    lines = []
    for o in ENGINE_OPTIONS:
        applies = [m for m in methods if m in o.defaults]
        if not applies:
            continue
        values = {repr(o.defaults[m]) for m in applies}
        if len(values) == 1:
            default = f"default {values.pop()}"
        else:
            default = ", ".join(f"{m}: {o.defaults[m]!r}" for m in applies)
        lines.append(f"{indent}``{o.name}`` ({'/'.join(applies)}; {default}; {o.range_text()}): {o.help}")
    return "\n".join(lines)
