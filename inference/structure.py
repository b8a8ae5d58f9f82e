"""Read a model's structure from one trace: which sites are observed, global, local, enumerated.

The engines never know a concrete model; they ask this module what kind of sites a program has:

- observed: sample sites with ``obs=`` data;
- enumerated: discrete latent sites with finite support (summed out exactly, then recovered with
  ``infer_discrete``);
- local: continuous latent sites inside a *data plate* (the outermost plate of an observed site), one per
  data point, like a VAE's z;
- global: every other latent site (shared parameters, like the coin's p).

It also names what the engines report: each site's ArviZ dimensions (`ModelStructure.dims`, see
`_site_dims`) and the state names a discrete site declares in its ``infer`` dict, plain Pyro that every
handler ignores (`ModelStructure.states`)::

    pyro.sample("rain", dist.Categorical(probs), infer={"states": ["yes", "no"]})
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.subsample_messenger import SubsampleMessenger
from pyro.poutine.util import site_is_subsample

from ppl_models.errors import first_line

from .errors import InputError, ModelError

STATES = "states"  # the key of a site's ``infer`` dict that names the states of its values 0, 1, ...

# Evaluating a mini-batch model on the whole data set: Pyro's plate refuses a subsample (here the full index
# set) whose length differs from its `subsample_size`, so while `full_size_plates()` is active every plate
# is opened without its subsample_size: it then takes all indices (or the conditioned full index set) at
# scale 1. Pyro's `SubsampleMessenger._subsample` is replaced only while the outermost such context is open
# and put back when it closes, even on an error: importing the suite changes nothing in Pyro, and outside
# the context plates behave exactly as in Pyro.
_FULL_SIZE = [0]  # how many full_size_plates() contexts are open (they nest)
_SAVED: list = []  # Pyro's own `_subsample` (the class attribute as it was) while the patch is in place
_PATCH_LOCK = threading.Lock()


def _full_size(pyro_subsample: Callable) -> staticmethod:
    """Pyro's `_subsample` with the subsample size dropped from every plate that has a size."""
    def _subsample(name, size=None, subsample_size=None, subsample=None, use_cuda=None, device=None):
        if size is not None:
            subsample_size = None
        return pyro_subsample(name, size, subsample_size, subsample, use_cuda, device)

    return staticmethod(_subsample)


@contextlib.contextmanager
def full_size_plates() -> Iterator[None]:
    """Within this context every subsampled plate runs at its full size (all indices, no rescaling)."""
    with _PATCH_LOCK:
        if _FULL_SIZE[0] == 0:
            _SAVED.append(SubsampleMessenger.__dict__["_subsample"])
            SubsampleMessenger._subsample = _full_size(SubsampleMessenger._subsample)
        _FULL_SIZE[0] += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _FULL_SIZE[0] -= 1
            if _FULL_SIZE[0] == 0:
                SubsampleMessenger._subsample = _SAVED.pop()


def _reported_input_error(exc: BaseException) -> BaseException | None:
    """An `InputError` (a `DataError` included) the model raised, found behind Pyro's re-raising of it (Pyro's trace
    rebuilds a failing site's exception from its message, which these two-argument errors do not survive)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


# installed packages and the standard library: an error raised in there (a distribution refusing a value,
# a plate of the wrong size) is about the data; one raised in the program's own lines is the program's
_LIBRARIES = tuple(sorted({os.path.realpath(sysconfig.get_paths()[k]) + os.sep
                           for k in ("stdlib", "platstdlib", "purelib", "platlib")} |
                          {os.path.dirname(os.path.realpath(m.__file__)) + os.sep for m in (torch, pyro)}))


def _in_library(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_LIBRARIES)


_DATA_ERRORS = (ValueError, RuntimeError, TypeError, IndexError)


def program_failure(exc: BaseException, program: Callable, role: str = "model") -> BaseException | None:
    """A `ModelError` when `exc` comes from the user's own program code (a ``raise`` or a Python error in
    the model's lines), ``None`` when it comes from inside torch/Pyro (a distribution refusing a value, a
    plate of the wrong size: the data's fault). The message names the program, the error and the line."""
    from .errors import ModelError

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    if frames and _in_library(frames[-1].filename) and isinstance(exc, _DATA_ERRORS):
        return None
    user = [f for f in frames if not _in_library(f.filename)]
    name = getattr(program, "__name__", "") or type(program).__name__
    who = role if name in (role, "") else f"{role} {name}"  # (a function named `model`: not "model model")
    if not user:
        return None if isinstance(exc, _DATA_ERRORS) else ModelError(
            f"{who} raised {type(exc).__name__}: {first_line(exc)}")
    where = f" at {os.path.basename(user[-1].filename)}:{user[-1].lineno}"
    return ModelError(f"{who} raised {type(exc).__name__}{where}: {first_line(exc)}")


_SUITE = os.path.dirname(os.path.realpath(__file__)) + os.sep


def program_line(exc: BaseException) -> str | None:
    """Where in the user's program `exc` was raised, as ``"file.py:LINE"``: the innermost frame outside
    torch, Pyro and the engines; None if there is none."""
    user = [f for f in traceback.extract_tb(exc.__traceback__)
            if not _in_library(f.filename) and not os.path.realpath(f.filename).startswith(_SUITE)
            and not f.filename.startswith("<eval_with_key>")]  # (not code torch.fx generated)
    return f"{os.path.basename(user[-1].filename)}:{user[-1].lineno}" if user else None


def at_full_size(fn: Callable) -> Callable:
    """`fn` with every subsampled plate run at its full size while it runs (see `full_size_plates`)."""

    def full(*args, **kwargs):
        with full_size_plates():
            return fn(*args, **kwargs)

    return full


@dataclass
class ModelStructure:
    trace: Any
    observed: list[str]
    enumerated: list[str]
    local: list[str]
    global_: list[str]
    deterministic: list[str]
    non_enumerable: list[str]
    max_plate_nesting: int
    dims: dict[str, list[str]] = field(default_factory=dict)
    full_plates: dict[str, torch.Tensor] = field(default_factory=dict)
    states: dict[str, list[str]] = field(default_factory=dict)

    @property
    def latent(self) -> list[str]:
        return self.global_ + self.local + self.enumerated + self.non_enumerable

    @property
    def continuous(self) -> list[str]:
        return self.global_ + self.local

    def support(self, name: str) -> list | None:
        """The values a scalar discrete site takes, in order (`finite_support`); None for any other site."""
        site = self.trace.nodes.get(name)
        return finite_support(site["fn"]) if site is not None and site["type"] == "sample" else None

    def dims_for(self, name: str, ndim: int, log_prob: bool = False) -> list[str]:
        """Dimension names of an array of `ndim` axes (chain and draw left out) holding site `name`'s values,
        or with ``log_prob=True`` its pointwise log-density (the batch axes alone, the event axes summed).

        A shorter array (an observation that broadcasts against its site) takes the names of the rightmost
        axes; axes beyond the site's own are ``<name>_extra_<i>``.
        """
        dims = list(self.dims.get(name, []))
        if log_prob and dims:
            site = self.trace.nodes[name]
            event = min(getattr(site["fn"], "event_dim", 0) or 0, len(dims))
            dims = dims[:len(dims) - event]
        if ndim <= len(dims):
            return dims[len(dims) - ndim:]
        return [f"{name}_extra_{i}" for i in range(ndim - len(dims))] + dims


def enumerable(model: Callable) -> Callable:
    """The model with every finite discrete latent site marked for parallel enumeration."""
    return config_enumerate(model, default="parallel")


def finite_support(fn: Any) -> list | None:
    """The values of a scalar discrete distribution's finite support, in order (``[0, 1, 2]`` for a
    Categorical of three, ``[0.0, 1.0]`` for a Bernoulli); None for a continuous distribution, one with event
    dimensions, or a support that differs across the batch (a Binomial of several total counts)."""
    if fn is None or not getattr(fn, "has_enumerate_support", False) or (getattr(fn, "event_dim", 0) or 0):
        return None
    try:
        support = fn.enumerate_support(expand=False)
    except (NotImplementedError, RuntimeError, ValueError, TypeError):
        return None
    return [v.item() for v in support.reshape(support.shape[0], -1)[:, 0]]


def _declared_states(name: str, site: dict) -> list[str] | None:
    """The state names site `name` declares in its ``infer`` dict, checked against its support."""
    declared = site["infer"].get(STATES)
    if declared is None:
        return None
    if isinstance(declared, (str, bytes)) or not hasattr(declared, "__len__"):
        raise ModelError(f"site {name!r} declares infer={{'{STATES}': {declared!r}}}: expected a list of state "
                         "names, one for each value 0, 1, ... of the site")
    names = [str(s) for s in declared]
    support = finite_support(site["fn"])
    if support is None:
        raise ModelError(f"site {name!r} declares state names but its distribution is not a scalar discrete one "
                         "with a finite support (Categorical, Bernoulli, ...)")
    if len(names) != len(support):
        raise ModelError(f"site {name!r} declares {len(names)} state names ({', '.join(names)}) but its "
                         f"distribution has {len(support)} values")
    if len(set(names)) != len(names):
        raise ModelError(f"site {name!r} declares a state name twice: {', '.join(names)}")
    return names


def _plate_sizes(trace: Any) -> dict[str, int]:
    """Every vectorised plate of the trace and its size."""
    sizes: dict[str, int] = {}
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        for f in site["cond_indep_stack"]:
            if f.vectorized and f.dim is not None:
                sizes.setdefault(f.name, int(f.size))
    return sizes


def _site_dims(name: str, site: dict, plates: dict[str, int] | None = None,
               reserved: set[str] | frozenset = frozenset()) -> list[str]:
    """ArviZ dimension names of a site's values (its batch and event shape, and its value's, broadcast).

    - a batch axis inside a plate takes the plate's name;
    - any other axis (a batch axis outside every plate, an event axis) takes the name of the plate of its
      size when `plates` has exactly one of that size (the caller leaves the data plates out) and it is not
      already an axis of this site nor the name of a site: a Dirichlet's K weights beside a plate K are
      indexed by K, a D-vector of coefficients is not by the N rows;
    - else ``<name>_batch`` / ``<name>_event``, numbered ``_0``, ``_1``, ... by position among the site's
      batch (or event) axes when it has several unnamed ones.

    ArviZ's own placeholder, ``<name>_dim_<k>``, is never used.
    """
    fn = site.get("fn")
    value = site["value"]
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    if fn is not None and hasattr(fn, "batch_shape"):
        try:
            shape = tuple(torch.broadcast_shapes(shape, tuple(fn.batch_shape) + tuple(fn.event_shape)))
        except RuntimeError:  # (a misshaped observation is reported elsewhere)
            pass
    ndim = len(shape)
    event_ndim = min(getattr(fn, "event_dim", 0) or 0, ndim)
    batch_ndim = ndim - event_ndim  # plate dims count from the right of the batch dims, not the event's
    frames = {f.dim: f.name for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None}
    dims: list[str | None] = [frames.get(axis - batch_ndim) if axis < batch_ndim else None for axis in range(ndim)]
    for axis in range(ndim):
        if dims[axis] is None and shape[axis] > 1:
            same = [p for p, size in (plates or {}).items() if size == shape[axis]]
            if len(same) == 1 and same[0] not in dims and same[0] not in reserved:
                dims[axis] = same[0]
    for kind, axes in (("batch", range(batch_ndim)), ("event", range(batch_ndim, ndim))):
        axes = list(axes)
        unnamed = [a for a in axes if dims[a] is None]
        for a in unnamed:
            dims[a] = f"{name}_{kind}" if len(unnamed) == 1 else f"{name}_{kind}_{axes.index(a)}"
    return [str(d) for d in dims]


PRIOR_DRAWS = 10  # prior draws tried before a model that fails on every one is reported as not running


def _trace_at_full_size(model: Callable, data: dict) -> tuple:
    with pyro.validation_enabled(True):
        trace = poutine.trace(enumerable(model)).get_trace(**data)
        full_plates = {
            name: torch.arange(site["fn"].size)
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and site_is_subsample(site)
            and (site["fn"].subsample_size or site["fn"].size) < site["fn"].size
        }
        if full_plates:
            with full_size_plates():
                trace = poutine.trace(poutine.condition(enumerable(model), full_plates)).get_trace(**data)
    return trace, full_plates


def inspect_model(model: Callable, data: dict) -> ModelStructure:
    """Trace `model(**data)` once and classify its sites.

    Subsampled plates are traced at full size (their index sites conditioned on every index), so that
    the structure, and every evaluation built on it, covers the whole data set. A trace that fails is
    retried with fresh prior draws (up to `PRIOR_DRAWS`) before the data is blamed.
    """
    for attempt in range(PRIOR_DRAWS):
        try:
            trace, full_plates = _trace_at_full_size(model, data)
            break
        except Exception as exc:  # noqa: BLE001 (classified below: bad data, or the program's own failure)
            reported = _reported_input_error(exc)
            if reported is not None:  # the model itself named the field and the problem
                raise reported from None
            own = program_failure(exc, model, "model")
            if own is not None and attempt == PRIOR_DRAWS - 1:
                raise own from exc
            if own is None and (attempt == PRIOR_DRAWS - 1 or isinstance(exc, (TypeError, IndexError))):
                raise InputError("data", f"the model cannot run on this data: {first_line(exc)}") from exc
            # a prior draw can land where the model's own arithmetic fails (a covariance that is not
            # positive definite): draw again before blaming the data, as Pyro's initialisation does
    observed, enumerated, local, global_, determ, non_enum = [], [], [], [], [], []
    data_plates: set[str] = set()
    nesting = 0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["infer"].get("_deterministic"):  # pyro.deterministic: an observed Delta in Pyro's eyes
            determ.append(name)
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        if frames:
            nesting = max(nesting, max(-f.dim for f in frames))
        nesting = max(nesting, len(site["fn"].batch_shape))
        if site["is_observed"]:
            observed.append(name)
            if frames:
                outermost = min(frames, key=lambda f: f.dim)
                data_plates.add(outermost.name)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or site["is_observed"]:
            continue
        fn = site["fn"]
        if site["infer"].get("enumerate") == "parallel":
            enumerated.append(name)
        elif getattr(fn, "support", None) is not None and fn.support.is_discrete:
            non_enum.append(name)
        elif any(f.name in data_plates for f in site["cond_indep_stack"] if f.vectorized):
            local.append(name)
        else:
            global_.append(name)
    sites = {name: site for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)}
    # an axis outside every plate may borrow the name of a plate of its size, but not a data plate's: the
    # K weights of a Dirichlet are indexed by the K components, a D-vector of coefficients is not by N rows
    plates = {p: size for p, size in _plate_sizes(trace).items() if p not in data_plates}
    dims = {name: _site_dims(name, site, plates, set(sites)) for name, site in sites.items()}
    states = {}
    for name, site in sites.items():
        declared = _declared_states(name, site)
        if declared is not None:
            states[name] = declared
    return ModelStructure(trace, observed, enumerated, local, global_, determ, non_enum, nesting, dims, full_plates,
                          states)
