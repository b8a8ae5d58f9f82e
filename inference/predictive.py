"""Evaluate a model at many posterior draws at once: log-likelihood, predictive draws, prior, discrete sites.

Pyro's `Predictive(parallel=True)` reshapes draws assuming every site dimension is a plate dimension, which
breaks for sites with event dimensions (a `coef` drawn with `.to_event(1)`). Here each draw is reshaped from
the site's own batch and event shapes in the model's prototype trace, the model runs once under an outer
``_draws`` plate, and a model that does not broadcast falls back to one run per draw. Draws are processed in
chunks so memory stays bounded on large data, and each chunk is written straight into its place in the
final (chain, draw, ...) array: no list of chunks concatenated at the end (which held every value twice).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Iterable

import numpy as np
import pyro
import torch
from opt_einsum import shared_intermediates
from pyro import poutine
from pyro.infer import infer_discrete
from pyro.ops import packed
from pyro.ops.einsum import contract
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from .structure import ModelStructure, at_full_size, enumerable

# values of the sampled sites per chunk of draws (16 MB in float32). Each chunk runs the model once, and a
# model that recomputes data summaries on every call (linear_regression: sd(X), sd(y) in float64) pays that
# once per chunk; larger chunks were slower at 2e5 rows (3.5 s against 5.4 s with 1e7), no faster at 1e6
_CHUNK_ELEMENTS = 4_000_000
_PRIOR_ELEMENTS = 5_000_000  # the prior group's budget of tensor elements
_DENSE_LIMIT = 5e7  # above this many elements the enumerated sites are summed out by contraction


def _batch_ndim(site: dict) -> int:
    return site["value"].dim() - site["fn"].event_dim


def _lift(value: torch.Tensor, site: dict, nesting: int, padded: bool) -> torch.Tensor:
    """(S, *site_shape) -> the layout the model broadcasts against.

    Padded (Pyro's convention): (S, 1, ..., 1, *site_shape), the draw axis left of every plate dim, for
    models that use a global site as is (``Bernoulli(p)`` inside a plate). Leading: (S, *site_shape), for
    models written over leading batch dims (``p.unsqueeze(-1)``).
    """
    pad = nesting - _batch_ndim(site) if padded else 0
    return value.reshape(value.shape[:1] + (1,) * pad + tuple(site["value"].shape))


def _lower(value: torch.Tensor, num: int, shape: tuple, nesting: int, batch_ndim: int) -> torch.Tensor:
    """Inverse of `_lift`, also expanding values that did not depend on the draw."""
    pad = nesting - batch_ndim
    target = (num,) + (1,) * pad + tuple(shape)
    while value.dim() > len(target) and value.shape[0] == 1:
        value = value.squeeze(0)
    if value.dim() < len(target):
        value = value.reshape((1,) * (len(target) - value.dim()) + tuple(value.shape))
    return value.expand(target).reshape((num,) + tuple(shape))


def _chunks(num: int, per_draw: int) -> Iterable[slice]:
    size = max(1, _CHUNK_ELEMENTS // max(per_draw, 1))
    for start in range(0, num, size):
        yield slice(start, min(num, start + size))


def _per_draw_elements(structure: ModelStructure) -> int:
    """Values the sampled sites hold per draw (a plate's index site is the same for every draw: not counted)."""
    total = 0
    for site in structure.trace.nodes.values():
        if site["type"] == "sample" and isinstance(site["value"], torch.Tensor) and not site_is_subsample(site):
            total += site["value"].numel()
    return total


@contextlib.contextmanager
def _quiet():
    """No autograd and no distribution validation (distributions built here keep it off in later log_prob)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        yield


def _in_draws_plate(fn: Callable, num: int, nesting: int) -> Callable:
    """`fn` run inside an outer plate of `num` draws, left of every plate of the model.

    The plate is part of the program (not an outer context), so handlers that block outer messengers,
    like `infer_discrete`'s first pass, still see it.
    """

    def vectorized(**data):
        with pyro.plate("_draws", num, dim=-(nesting + 1)):
            return fn(**data)

    return vectorized


class _LayoutMismatch(Exception):
    """A site whose batch shape does not fit the layout being probed."""


class _LayoutCheck(pyro.poutine.messenger.Messenger):
    """Raise `_LayoutMismatch` at the first sample site (of the prototype trace) whose batch shape, once
    the program's plates have broadcast it, is not the prototype's with the draw axis (1 or `n`) at the
    draws plate's dim and 1 between: a global site is (n, 1), never (n, 3). (A check of the draw axis
    alone passed an HMM's ``transition[x]``, which indexed the draw axis, whenever 3 draws met 3 states,
    and its predictive draws came out misshapen.)"""

    def __init__(self, structure: ModelStructure, nesting: int, n: int):
        super().__init__()
        self.proto = structure.trace.nodes
        self.nesting, self.n = nesting, n

    def _pyro_sample(self, msg: dict) -> None:
        if site_is_subsample(msg) or msg["name"] not in self.proto:
            return
        batch = tuple(msg["fn"].batch_shape)
        want = tuple(self.proto[msg["name"]]["fn"].batch_shape)
        width = self.nesting + 1
        full = (1,) * (width - len(batch)) + batch
        between = full[1:max(1, width - len(want))]
        if len(batch) > width or full[0] not in (1, self.n) or any(d != 1 for d in between) \
                or (want and full[-len(want):] != want):
            raise _LayoutMismatch(msg["name"])


class _Evaluator:
    """Runs a model over chunks of draws: vectorized in the layout it broadcasts in, else once per draw.

    The layout is chosen once, by tracing a few draws and checking that every site's batch shape is its
    plate shape with the draw axis in front; a model that fits neither layout runs draw by draw.
    """

    LAYOUTS = ("padded", "leading", "loop")

    def __init__(self, model: Callable, data: dict, structure: ModelStructure):
        self.model = model
        self.data = data
        self.structure = structure
        self.nesting = structure.max_plate_nesting
        self.layout: str | None = None

    def _conditioned(self, draws: dict[str, torch.Tensor], layout: str, base: Callable) -> Callable:
        sites = self.structure.trace.nodes
        if layout == "loop":
            values = dict(draws)
        else:
            values = {k: _lift(v, sites[k], self.nesting, layout == "padded") for k, v in draws.items()}
        values.update(self.structure.full_plates)
        return at_full_size(poutine.condition(base, values))

    def _fits(self, draws: dict[str, torch.Tensor], layout: str, n: int) -> bool:
        """Whether the model runs on `n` draws in `layout`: every site's batch shape is its plate shape
        with the draw axis in front. The run stops at the first site that is not (`_LayoutCheck`): in a
        program that does not broadcast, shapes can grow with every site (an HMM's ``transition[x]`` adds
        the draw axes again at each step: 3^14 values by step 14, and the probe of a 30-step sequence
        filled 24 GB)."""
        check = _LayoutCheck(self.structure, self.nesting, n)
        try:
            with torch.no_grad(), check:
                fn = _in_draws_plate(self._conditioned(draws, layout, self.model), n, self.nesting)
                poutine.trace(fn).get_trace(**self.data)
        except (_LayoutMismatch, RuntimeError, ValueError, IndexError, AssertionError, TypeError):
            return False
        return True

    def conditioned(self, draw: dict[str, torch.Tensor]) -> Callable:
        """The model conditioned on one draw's values (and every plate at full size)."""
        return self._conditioned(draw, "loop", self.model)

    def choose(self, draws: dict[str, torch.Tensor], num: int) -> str:
        """The layout the model runs in: "padded", "leading" (vectorised over draws) or "loop"."""
        return self._choose(draws, num)

    def _probe_size(self) -> int:
        """How many draws the layout probe runs: a size no value of the program has along any axis, so a
        program that indexes or broadcasts the draw axis by mistake cannot pass for one that broadcasts."""
        sizes = {int(d) for site in self.structure.trace.nodes.values() if site["type"] == "sample"
                 for d in tuple(site["value"].shape) + tuple(getattr(site["fn"], "batch_shape", ()))}
        return next((n for n in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37) if n not in sizes), 41)

    def _choose(self, draws: dict[str, torch.Tensor], num: int) -> str:
        if self.layout is None:
            n = self._probe_size()
            probe = {k: v[torch.arange(n) % max(num, 1)] for k, v in draws.items()}
            self.layout = next((lay for lay in self.LAYOUTS[:2] if self._fits(probe, lay, n)), "loop")
        return self.layout

    def traces(self, draws: dict[str, torch.Tensor], num: int, wrap: Callable[[Callable], Callable],
               enumerated: bool = False, per_draw: int | None = None):
        """Yield (slice, traces, vectorized) per chunk; `wrap` adds handlers around the vectorized model.

        Under enumeration every site's log-density enters the sum, the conditioned ones included, so only
        the padded layout (plate-aligned) is vectorized there. `per_draw` (default: the values of the
        sampled sites) sizes the chunks. The layout probe runs with Pyro's validation
        on; the chunks run with it off (`_quiet`): the data were checked when the model was inspected and the
        draws come from the fit, and the support and constraint checks were a fifth of the time on big data.
        """
        layout = self._choose(draws, num)
        if enumerated and layout == "leading":
            layout = "loop"
        for chunk in _chunks(num, per_draw or _per_draw_elements(self.structure)):
            part = {k: v[chunk] for k, v in draws.items()}
            n = chunk.stop - chunk.start
            if layout != "loop":
                fn = wrap(_in_draws_plate(self._conditioned(part, layout, self.model), n, self.nesting))
                with _quiet():
                    trace = poutine.trace(fn).get_trace(**self.data)
                yield chunk, [trace], True
                continue
            traces = []
            for i in range(n):
                fn = wrap(self._conditioned({k: v[i] for k, v in part.items()}, "loop", self.model))
                with _quiet():
                    traces.append(poutine.trace(fn).get_trace(**self.data))
            yield chunk, traces, False

    def collect(self, traces: list, vectorized: bool, n: int, names: Iterable[str], what: Callable) -> dict:
        """Per-site arrays (n, *site_shape) from the traces of one chunk; `what(site)` picks the tensor."""
        proto = self.structure.trace.nodes
        out = {}
        for name in names:
            site = proto[name]
            if vectorized:
                value = what(traces[0].nodes[name])
                shape = tuple(what(site).shape)
                if what is _value:  # a drawn value has its distribution's shape, which an observation that
                    # broadcasts (a (1,) array observed in a plate of 5) does not
                    shape = tuple(torch.broadcast_shapes(shape, site["fn"].shape()))
                bnd = len(shape) - (site["fn"].event_dim if what is _value else 0)
                out[name] = _lower(value, n, shape, self.nesting, bnd)
            else:
                out[name] = torch.stack([what(t.nodes[name]) for t in traces])
        return out


def _value(site: dict) -> torch.Tensor:
    return site["value"]


class _Gather:
    """Per-site arrays (num, *shape) filled chunk by chunk, in the tensors' own dtype (no float64 copy)."""

    def __init__(self, num: int):
        self.num = num
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, chunk: slice, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            part = value.detach().cpu().numpy()
            if name not in self.arrays:
                self.arrays[name] = np.empty((self.num,) + part.shape[1:], dtype=part.dtype)
            self.arrays[name][chunk] = part

    def result(self, chain_draw: tuple[int, int]) -> dict[str, np.ndarray]:
        return {k: v.reshape(tuple(chain_draw) + v.shape[1:]) for k, v in self.arrays.items()}


def flatten(samples: dict[str, np.ndarray], structure: ModelStructure | None = None
            ) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """(chain, draw, ...) arrays -> (chain*draw, ...) tensors, and the (chain, draw) shape. Floating values
    take the float type the site has in the program (`structure`: a float64 program stays float64), else
    the default one."""
    first = next(iter(samples.values()))
    chain_draw = tuple(first.shape[:2])
    nodes = structure.trace.nodes if structure is not None else {}
    flat = {}
    for k, v in samples.items():
        t = torch.as_tensor(np.asarray(v).reshape((-1,) + v.shape[2:]))
        if t.is_floating_point():
            site = nodes.get(k)
            own = site["value"].dtype if site is not None and isinstance(site.get("value"), torch.Tensor) else None
            t = t.to(own if own is not None and own.is_floating_point else torch.get_default_dtype())
        flat[k] = t
    return flat, chain_draw


def _site_log_lik(site: dict) -> torch.Tensor:
    return site["fn"].log_prob(site["value"])


def log_likelihood(model: Callable, data: dict, structure: ModelStructure,
                   samples: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str | None]:
    """Pointwise log p(observed | continuous latents) per draw, discrete enumerated sites summed out.

    Returns the arrays (chain, draw, *observed batch shape) and a note when something had to be skipped.
    """
    conditioning = {k: v for k, v in samples.items() if k in structure.continuous}
    num_chain_draw = next(iter(samples.values())).shape[:2] if samples else (1, 1)
    flat, chain_draw = flatten(conditioning, structure) if conditioning else ({}, tuple(num_chain_draw))
    num = chain_draw[0] * chain_draw[1]
    ev = _Evaluator(model, data, structure)
    obs = structure.observed
    shapes = {name: _log_lik_shape(structure.trace.nodes[name]) for name in obs}
    gather = _Gather(num)
    if not structure.enumerated:
        if flat and ev.choose(flat, num) == "loop":
            recorded = _recorded_draws(ev, flat, num, lambda f: f, obs,
                                       lambda site: _squeeze_to(_site_log_lik(site), shapes[site["name"]]))
            if recorded is not None:
                gather.add(slice(0, num), recorded)
                return gather.result(chain_draw), None
        for chunk, traces, vec in ev.traces(flat, num, lambda f: f):
            gather.add(chunk, _lower_log_lik(ev, traces, vec, chunk.stop - chunk.start, shapes))
        return gather.result(chain_draw), None
    # enumerated discrete latents: sum them out, per data point
    sizes = [structure.trace.nodes[k]["fn"].enumerate_support(expand=False).shape[0] for k in structure.enumerated]
    dense = math.prod(sizes) * max(1, _per_draw_elements(structure)) <= _DENSE_LIMIT
    nesting = structure.max_plate_nesting
    wrap = lambda f: poutine.enum(enumerable(f), first_available_dim=-(nesting + 2))  # noqa: E731
    # a chunk's dense sum holds every joint assignment of the enumerated sites per draw: size chunks by it
    per_draw = (math.prod(sizes) if dense else 1) * max(1, _per_draw_elements(structure))
    if flat and ev.choose(flat, num) in ("loop", "leading"):  # (enumerated, both run draw by draw)
        def read(trace: Trace) -> dict[str, torch.Tensor]:
            out = _contracted_log_lik(trace, structure.enumerated, obs)
            if out is None:
                raise ValueError("an enumerated site outside an observed site's plates")  # (the loop says so)
            return {name: _squeeze_to(value, shapes[name]) for name, value in out.items()}

        recorded = _recorded_draws(ev, flat, num, wrap, obs, read=read)
        if recorded is not None:
            gather.add(slice(0, num), recorded)
            return gather.result(chain_draw), None
    for chunk, traces, vec in ev.traces(flat, num, wrap, enumerated=True, per_draw=per_draw):
        n = chunk.stop - chunk.start
        per_trace = []
        for trace in traces:
            if not dense:
                out = _contracted_log_lik(trace, structure.enumerated, obs)
                if out is None:
                    return {}, "log-likelihood skipped: too many enumerated discrete sites to sum out pointwise"
                per_trace.append(out)
                continue
            enum_terms = [trace.nodes[k]["fn"].log_prob(trace.nodes[k]["value"]) for k in structure.enumerated]
            out = {}
            for name in obs:
                total = _site_log_lik(trace.nodes[name])
                for term in enum_terms:
                    total = total + term
                lead = total.dim() - (nesting + (1 if vec else 0))
                if lead > 0:
                    total = total.logsumexp(dim=tuple(range(lead)))
                out[name] = total
            per_trace.append(out)
        chunk_out = {}
        for name in obs:
            shape = shapes[name]
            if vec:
                chunk_out[name] = _lower(per_trace[0][name], n, shape, nesting, len(shape))
            else:
                chunk_out[name] = torch.stack([_squeeze_to(t[name], shape) for t in per_trace])
        gather.add(chunk, chunk_out)
    return gather.result(chain_draw), None


def log_prior(model: Callable, data: dict, structure: ModelStructure,
              samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Log prior density of each continuous latent site at each draw, (chain, draw, *site batch shape): the
    ``log_prior`` group ArviZ's power-scaling sensitivity reads (its prior is the product of these).

    Vectorised like `log_likelihood`: the model runs once per chunk of draws, conditioned on every
    continuous site; enumerated discrete sites are not part of it (the likelihood sums them out)."""
    sites = [k for k in structure.continuous if k in samples]
    if not sites:
        return {}
    flat, chain_draw = flatten({k: samples[k] for k in sites}, structure)
    num = chain_draw[0] * chain_draw[1]
    ev = _Evaluator(model, data, structure)
    shapes = {name: _log_lik_shape(structure.trace.nodes[name]) for name in sites}
    gather = _Gather(num)
    if ev.choose(flat, num) == "loop":
        recorded = _recorded_draws(ev, flat, num, lambda f: f, sites,
                                   lambda site: _squeeze_to(_site_log_lik(site), shapes[site["name"]]))
        if recorded is not None:
            gather.add(slice(0, num), recorded)
            return gather.result(chain_draw)
    for chunk, traces, vec in ev.traces(flat, num, lambda f: f):
        gather.add(chunk, _lower_log_lik(ev, traces, vec, chunk.stop - chunk.start, shapes))
    return gather.result(chain_draw)


def _contracted_log_lik(trace, enumerated: list[str], observed: list[str]) -> dict[str, torch.Tensor] | None:
    """The dense sum above, log sum_z p(obs | ...) prod_k p(z_k | ...), by tensor contraction instead.

    Each site's log-density is packed to its own dimensions and the enumerated ones are summed out with
    `pyro.ops.einsum` (variable elimination), so many enumerated sites (a Bayesian network) never build
    the product of all their supports. Plate dimensions of the observed site stay; `None` when an
    enumerated site lives in a plate the observed site is not in (left to the dense path's caller).
    """
    trace.compute_log_prob()
    trace.pack_tensors()
    plate_symbols = set(trace.plate_to_symbol.values())
    terms = [trace.nodes[k]["packed"]["log_prob"] for k in enumerated]
    out = {}
    with shared_intermediates():  # (the sites' sums reuse their common steps: an HMM's forward messages)
        for name in observed:
            site_term = trace.nodes[name]["packed"]["log_prob"]
            target = "".join(d for d in site_term._pyro_dims if d in plate_symbols)
            operands = terms + [site_term]
            if any(d in plate_symbols and d not in target for op in operands for d in op._pyro_dims):
                return None
            result = contract(",".join(op._pyro_dims for op in operands) + "->" + target, *operands,
                              backend="pyro.ops.einsum.torch_log")
            result._pyro_dims = target
            out[name] = packed.unpack(result, trace.symbol_to_dim)
    return out


def _squeeze_to(value: torch.Tensor, shape: tuple) -> torch.Tensor:
    while value.dim() > len(shape) and value.shape[0] == 1:
        value = value.squeeze(0)
    return value.expand(shape)


def _log_lik_shape(site: dict) -> tuple:
    """The shape of a site's pointwise log-density in the prototype trace (computed once per call, not once
    per chunk of draws)."""
    with torch.no_grad():
        return tuple(_site_log_lik(site).shape)


def _lower_log_lik(ev: _Evaluator, traces: list, vec: bool, n: int, shapes: dict[str, tuple]) -> dict:
    out = {}
    for name, shape in shapes.items():
        if vec:
            out[name] = _lower(_site_log_lik(traces[0].nodes[name]), n, shape, ev.nesting, len(shape))
        else:
            out[name] = torch.stack([_squeeze_to(_site_log_lik(t.nodes[name]), shape) for t in traces])
    return out


def predictive(model: Callable, data: dict, structure: ModelStructure, samples: dict[str, np.ndarray],
               sites: list[str] | None = None) -> dict[str, np.ndarray]:
    """Draws of the observed sites (or `sites`) given each posterior draw: the posterior predictive."""
    sites = list(structure.observed if sites is None else sites)
    flat, chain_draw = flatten(samples, structure)
    num = chain_draw[0] * chain_draw[1]
    base = poutine.uncondition(model)
    ev = _Evaluator(base, data, structure)
    gather = _Gather(num)
    if ev.choose(flat, num) == "loop":
        recorded = _recorded_draws(ev, flat, num, lambda f: f, sites)
        if recorded is not None:
            gather.add(slice(0, num), recorded)
            return gather.result(chain_draw)
    for chunk, traces, vec in ev.traces(flat, num, lambda f: f):
        gather.add(chunk, ev.collect(traces, vec, chunk.stop - chunk.start, sites, _value))
    return gather.result(chain_draw)


def prior(model: Callable, data: dict, structure: ModelStructure, num_samples: int | None = None,
          predictive: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draws from the prior: (latent sites, observed sites as prior predictive), each (1, draw, ...).

    By default 500 draws, fewer for a model whose one draw is large (at least 50): the prior group is
    there when cheap, not at any cost. ``predictive=False`` keeps the latent sites only (nothing per
    observation is gathered) and returns an empty predictive.
    """
    if num_samples is None:
        num_samples = int(min(500, max(50, _PRIOR_ELEMENTS // max(1, _per_draw_elements(structure)))))
    ev = _Evaluator(poutine.uncondition(model), data, structure)
    names = structure.latent + (structure.observed if predictive else [])
    gather = _Gather(num_samples)
    recorded = _recorded_draws(ev, {}, num_samples, lambda f: f, names) \
        if ev.choose({}, num_samples) == "loop" else None
    if recorded is not None:
        gather.add(slice(0, num_samples), recorded)
    else:
        for chunk, traces, vec in ev.traces({}, num_samples, lambda f: f):
            gather.add(chunk, ev.collect(traces, vec, chunk.stop - chunk.start, names, _value))
    both = gather.result((1, num_samples))
    return ({k: both[k] for k in structure.latent}, {k: both[k] for k in structure.observed if k in both})


def sample_discrete(model: Callable, data: dict, structure: ModelStructure, samples: dict[str, np.ndarray],
                    chain_draw: tuple[int, int] | None = None, temperature: int = 1) -> dict[str, np.ndarray]:
    """Draw the enumerated discrete sites from their exact conditional given each draw of the rest.

    `temperature=0` gives the most probable assignment instead (the MAP of the discrete sites). A model
    whose latent sites are all discrete (a Bayesian network) passes no `samples` and a `chain_draw` shape:
    its draws then come straight from the exact posterior.
    """
    nesting = structure.max_plate_nesting
    conditioning = {k: v for k, v in samples.items() if k in structure.continuous}
    if conditioning:
        flat, chain_draw = flatten(conditioning, structure)
    elif chain_draw is None:
        raise ValueError("sample_discrete needs chain_draw when there is nothing to condition on")
    else:
        flat = {}
    num = chain_draw[0] * chain_draw[1]
    ev = _Evaluator(model, data, structure)
    wrap = lambda f: infer_discrete(enumerable(f), first_available_dim=-(nesting + 2), temperature=temperature)  # noqa: E731
    gather = _Gather(num)
    if flat and ev.choose(flat, num) in ("loop", "leading"):  # (enumerated, both run draw by draw)
        recorded = _recorded_draws(ev, flat, num, wrap, structure.enumerated)
        if recorded is not None:
            gather.add(slice(0, num), recorded)
            return gather.result(chain_draw)
    for chunk, traces, vec in ev.traces(flat, num, wrap, enumerated=True):
        gather.add(chunk, ev.collect(traces, vec, chunk.stop - chunk.start, structure.enumerated, _value))
    return gather.result(chain_draw)


def _recorded_draws(ev: "_Evaluator", draws: dict[str, torch.Tensor], num: int, wrap: Callable,
                    names: list[str], what: Callable[[dict], torch.Tensor] = _value, chunk: int = 1000,
                    read: Callable[[Trace], dict[str, torch.Tensor]] | None = None
                    ) -> dict[str, torch.Tensor] | None:
    """The `names` sites of a program that runs only draw by draw (its layout is "loop"), for every draw at
    once (`what` of each site, or `read` of the whole trace: a name -> tensor dict over `names`, such as a
    log-likelihood with the enumerated sites summed out); the wrapped program at one draw is recorded into a
    graph of tensor operations
    (`inference.fast.record`; its random draws become graph operations) and that graph is vectorised
    over the draws with ``torch.func.vmap`` (each draw its own random numbers). None when the program
    cannot be recorded (it reads a drawn value into Python), and the caller loops.

    Why: Pyro's enumeration handlers cannot run under vmap themselves (they read ``.data``), and looping
    over draws runs Pyro's handlers once per draw: an HMM of 34 enumerated states took 0.25-0.7 s a draw,
    longer than its sampling; recorded once, 4,000 draws take seconds."""
    from .fast import record

    keys = list(draws)
    inputs = list(draws.values()) or [torch.arange(num)]  # (nothing to condition on: the prior)

    def one(*values):
        fn = wrap(ev.conditioned({k: v for k, v in zip(keys, values)}))
        with _quiet():  # (reading with validation off too: its NaN checks read values)
            trace = poutine.trace(fn).get_trace(**ev.data)
            found = read(trace) if read is not None else {name: what(trace.nodes[name]) for name in names}
        return tuple(found[name] for name in names)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = record(one, *[v[0] for v in inputs])
            batched = torch.func.vmap(graph, randomness="different")
            parts = [batched(*[v[start:start + chunk] for v in inputs]) for start in range(0, num, chunk)]
    except Exception:  # noqa: BLE001 (a program that cannot be recorded runs draw by draw)
        return None
    return {name: torch.cat([part[i] for part in parts]) for i, name in enumerate(names)}


def observed_data(structure: ModelStructure) -> dict[str, np.ndarray]:
    return {k: structure.trace.nodes[k]["value"].detach().cpu().numpy() for k in structure.observed}


__all__ = ["log_likelihood", "log_prior", "predictive", "prior", "sample_discrete", "observed_data", "flatten"]
