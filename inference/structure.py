"""Read a model's structure from one trace: which sites are observed, global, local, enumerated.

The engines never know a concrete model; they ask this module what kind of sites a program has:

- observed: sample sites with ``obs=`` data;
- enumerated: discrete latent sites with finite support (summed out exactly, then recovered with
  ``infer_discrete``);
- local: continuous latent sites inside a *data plate* (the outermost plate of an observed site), one per
  data point, like a VAE's z;
- global: every other latent site (shared parameters, like the coin's p).
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.subsample_messenger import SubsampleMessenger
from pyro.poutine.util import site_is_subsample

from .errors import InputError

# Evaluating a mini-batch model on the whole data set: Pyro's plate refuses a subsample (here the full index
# set) whose length differs from its `subsample_size`, so while `full_size_plates()` is active every plate
# is opened without its subsample_size: it then takes all indices (or the conditioned full index set) at
# scale 1. Outside the context, plates behave exactly as in Pyro.
_FULL_SIZE = [0]
_pyro_subsample = SubsampleMessenger._subsample


def _subsample(name, size=None, subsample_size=None, subsample=None, use_cuda=None, device=None):
    if _FULL_SIZE[0] and size is not None:
        subsample_size = None
    return _pyro_subsample(name, size, subsample_size, subsample, use_cuda, device)


SubsampleMessenger._subsample = staticmethod(_subsample)


@contextlib.contextmanager
def full_size_plates() -> Iterator[None]:
    """Within this context every subsampled plate runs at its full size (all indices, no rescaling)."""
    _FULL_SIZE[0] += 1
    try:
        yield
    finally:
        _FULL_SIZE[0] -= 1


def _reported_input_error(exc: BaseException) -> BaseException | None:
    """A `DataError`/`InputError` the model raised, found behind Pyro's re-raising of it (Pyro's trace
    rebuilds a failing site's exception from its message, which these two-argument errors do not survive)."""
    from ppl_models.data import DataError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (DataError, InputError)):
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def program_failure(exc: BaseException, program: Callable, role: str = "model") -> BaseException | None:
    """A `ModelError` when `exc` comes from the user's own program code (a ``raise`` or a Python error in
    the model's lines), ``None`` when it comes from inside torch/Pyro (a distribution refusing a value, a
    plate of the wrong size: the data's fault). The message names the program, the error and the line."""
    from .errors import ModelError

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    if frames and _in_library(frames[-1].filename) and isinstance(exc, _DATA_ERRORS):
        return None
    user = [f for f in frames if not _in_library(f.filename)]
    if not user:
        return None if isinstance(exc, _DATA_ERRORS) else ModelError(
            f"{role} {getattr(program, '__name__', '')} raised {type(exc).__name__}: {_first_line(exc)}")
    where = f" at {os.path.basename(user[-1].filename)}:{user[-1].lineno}"
    name = getattr(program, "__name__", "") or type(program).__name__
    return ModelError(f"{role} {name} raised {type(exc).__name__}{where}: {_first_line(exc)}")


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

    @property
    def latent(self) -> list[str]:
        return self.global_ + self.local + self.enumerated + self.non_enumerable

    @property
    def continuous(self) -> list[str]:
        return self.global_ + self.local


def enumerable(model: Callable) -> Callable:
    """The model with every finite discrete latent site marked for parallel enumeration."""
    return config_enumerate(model, default="parallel")


def _site_dims(name: str, site: dict) -> list[str]:
    """ArviZ dimension names of a site's value: plate names for plate dims, `name_dim_k` otherwise."""
    value = site["value"]
    ndim = value.dim() if isinstance(value, torch.Tensor) else 0
    frames = {f.dim: f.name for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None}
    event_dim = getattr(site.get("fn"), "event_dim", 0) or 0
    batch_ndim = max(ndim - event_dim, 0)  # plate dims count from the right of the batch dims, not the event's
    dims = []
    for axis in range(ndim):
        plate = frames.get(axis - batch_ndim) if axis < batch_ndim else None
        dims.append(plate or f"{name}_dim_{axis}")
    return dims


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
                raise InputError("data", f"the model cannot run on this data: {_first_line(exc)}") from exc
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
    dims = {
        name: _site_dims(name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }
    return ModelStructure(trace, observed, enumerated, local, global_, determ, non_enum, nesting, dims, full_plates)
