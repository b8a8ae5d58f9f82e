"""Read a Pyro program's structure from one traced run, with provenance tracking.

This is Pyro's ``get_model_relations`` idea (run the program once on `ProvenanceTensor` values and read
which sites each log-density depends on) extended with what a textbook figure needs and Pyro drops:

- hyperparameters: float keyword arguments (``alpha=1.0``) enter the run tagged ``h:alpha``, so a
  distribution argument that depends on them names them; a constant that lost its tag (``float(alpha)``)
  is matched back by value, checked by a second run in which each option it could be has a value of its
  own (so two options of equal value each keep their own arguments);
- covariates: data keyword arguments enter tagged ``d:X``; one that feeds an ``obs=`` is that observed
  site, any other is a covariate (an observed input such as a regression's ``X``);
- per-argument provenance: every distribution constructor is wrapped for the duration of the run to keep
  its arguments, so ``Beta(alpha, beta)`` is not blurred into one set by broadcasting;
- network weights: ``pyro.module`` weights are used through the module's own tensors, not the values
  Pyro's param statement returns, so a forward hook tags each registered module's output.

The run uses a private parameter store scope, no gradients, a forked RNG and validation off, so drawing a
model never changes the caller's state.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pyro
import torch
from pyro import poutine
from pyro.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance, track_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.utils._pytree import tree_map

from .symbols import number

HYPER = "h:"
DATA = "d:"


@dataclass
class Arg:
    """One constructor argument of a site's distribution: its provenance or its constant value."""

    name: str
    sources: frozenset  # raw provenance tags
    constant: Any = None  # a float or a tensor when sources is empty
    verbatim: bool = True  # the value of one of its sources passed as is (``mu``), not computed (``2 * mu``)


@dataclass
class Site:
    name: str
    kind: str  # latent, observed, deterministic
    dist: str | None
    args: list[Arg]
    sources: frozenset  # raw provenance of the log-density (or of the value, for deterministic sites)
    plates: tuple[str, ...]
    discrete: bool = False
    enumerated: bool = False
    markov: bool = False  # sampled inside a ``pyro.markov`` context (a time step)


@dataclass
class Extraction:
    sites: dict[str, Site] = field(default_factory=dict)
    plates: dict[str, dict] = field(default_factory=dict)  # name -> {"size": n, "dim": d}
    params: list[str] = field(default_factory=list)  # param site names, in order
    aliases: dict[str, str] = field(default_factory=dict)  # data key -> observed site
    hyper_values: dict[str, Any] = field(default_factory=dict)  # hyperparameter key -> value
    data_values: dict[str, Any] = field(default_factory=dict)  # data key -> tensor
    control: frozenset = frozenset()  # tags that reached a site's scale or mask
    # each indexing of a tagged tensor by tagged indices, in run order: (the table's tags, the tags of
    # each index in its position), so ``Vindex(p)[..., x, y, :]`` reads p_xy whichever of x, y came first
    indexings: list[tuple[frozenset, tuple[frozenset, ...]]] = field(default_factory=list)


def param_group(name: str) -> str:
    """The node a param site belongs to: ``decoder$$$fc.weight`` and ``decoder.fc.weight`` -> ``decoder``."""
    if "$$$" in name:
        return name.split("$$$")[0]
    return name.split(".")[0]


def _base(fn: Any) -> Any:
    while hasattr(fn, "base_dist") and type(fn).__name__ in (
        "Independent", "ExpandedDistribution", "MaskedDistribution", "FoldedDistribution",
    ):
        fn = fn.base_dist
    return fn


def _all_subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        for s in c.__subclasses__():
            if s not in out:
                out.append(s)
                todo.append(s)
    return out


_SKIP_ARGS = {"self", "validate_args"}


@contextlib.contextmanager
def _record_constructor_args():
    """Wrap every distribution ``__init__`` so each instance keeps ``_plates_args`` (name, value) pairs."""
    patched = []
    classes = [torch.distributions.Distribution] + _all_subclasses(torch.distributions.Distribution)
    for cls in classes:  # an expanded copy (plates broadcast every site) keeps the original's arguments
        expand = cls.__dict__.get("expand")
        if expand is None or not callable(expand):
            continue

        def expand_wrapper(self, *args, __expand=expand, **kwargs):
            new = __expand(self, *args, **kwargs)
            if "_plates_args" in self.__dict__ and new is not self:  # (expand re-runs a base __init__)
                try:
                    new.__dict__["_plates_args"] = self.__dict__["_plates_args"]
                except AttributeError:
                    pass
            return new

        functools.update_wrapper(expand_wrapper, expand)
        cls.expand = expand_wrapper
        patched.append((cls, "expand", expand))
    for cls in classes:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            continue

        def wrapper(self, *args, __init=init, __sig=sig, **kwargs):
            if "_plates_args" not in self.__dict__:
                try:
                    bound = __sig.bind(self, *args, **kwargs)
                    pairs = [
                        (k, v) for k, v in bound.arguments.items()
                        if k not in _SKIP_ARGS and v is not None
                        and __sig.parameters[k].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                             inspect.Parameter.VAR_KEYWORD)
                    ]
                except TypeError:
                    pairs = []
                self.__dict__["_plates_args"] = pairs
            __init(self, *args, **kwargs)

        functools.update_wrapper(wrapper, init)
        cls.__init__ = wrapper
        patched.append((cls, "__init__", init))
    try:
        yield
    finally:
        for cls, attr, original in reversed(patched):
            setattr(cls, attr, original)


class _Provenance(Messenger):
    """Tag each sample, deterministic and param value with its own name (direct dependencies only)."""

    def __init__(self, extraction: Extraction):
        super().__init__()
        self.x = extraction
        self.param_ids: dict[int, str] = {}
        self.value_sources: dict[str, frozenset] = {}

    def _pyro_sample(self, msg):
        if msg["is_observed"] and not site_is_subsample(msg) and not msg["infer"].get("_deterministic"):
            tags = get_provenance(msg["value"])
            keys = [t[len(DATA):] for t in tags if isinstance(t, str) and t.startswith(DATA)]
            if len(keys) == 1:
                self.x.aliases.setdefault(keys[0], msg["name"])

    def _pyro_post_sample(self, msg):
        if site_is_subsample(msg):
            return
        # an option that scales or masks a site (a KL weight) is used, just not as a distribution argument
        self.x.control |= get_provenance([msg.get("scale"), msg.get("mask")])
        if msg["infer"].get("_deterministic"):
            self.value_sources[msg["name"]] = get_provenance(msg["value"])
        msg["value"] = ProvenanceTensor(detach_provenance(msg["value"]), frozenset({msg["name"]}))

    def _pyro_param(self, msg):
        if len(msg["args"]) > 1 and isinstance(msg["args"][1], torch.Tensor):
            self.param_ids[id(detach_provenance(msg["args"][1]))] = msg["name"]

    def _pyro_post_param(self, msg):
        name = msg["name"]
        if name not in self.x.params:
            self.x.params.append(name)
        self.param_ids[id(detach_provenance(msg["value"]))] = name
        msg["value"] = ProvenanceTensor(detach_provenance(msg["value"]), frozenset({name}))


def _module_hook(tracker: _Provenance):
    def hook(module, inputs, output):
        names = frozenset(tracker.param_ids[id(p)] for p in module.parameters() if id(p) in tracker.param_ids)
        return track_provenance(output, names) if names else output

    return hook


def _tag(kwargs: dict, spec_fields: set[str] | None, hyper_tags: bool = True) -> tuple[dict, dict, dict]:
    """Tag float keyword arguments as hyperparameters and array ones as data."""
    tagged, hyper, data = {}, {}, {}
    for key, value in kwargs.items():
        is_field = spec_fields is not None and key in spec_fields
        if isinstance(value, bool) or value is None or (not hyper_tags and not is_field and (
                isinstance(value, float) or isinstance(value, torch.Tensor) and value.dim() == 0)):
            tagged[key] = value
        elif isinstance(value, float) and not is_field:
            hyper[key] = value
            tagged[key] = ProvenanceTensor(torch.tensor(value), frozenset({HYPER + key}))
        elif isinstance(value, torch.Tensor) and not isinstance(value, ProvenanceTensor):
            if value.dim() == 0 and value.is_floating_point() and not is_field:
                hyper[key] = value
                tagged[key] = ProvenanceTensor(value, frozenset({HYPER + key}))
            elif is_field or spec_fields is None:
                data[key] = value
                tagged[key] = ProvenanceTensor(value, frozenset({DATA + key}))
            else:  # a tensor-valued option: a fixed hyperparameter vector
                hyper[key] = value
                tagged[key] = ProvenanceTensor(value, frozenset({HYPER + key}))
        else:
            tagged[key] = value
    return tagged, hyper, data


# Functions whose result takes only the shape, dtype or device of their first argument, not its values:
# ``x.new_zeros(d)`` or ``torch.zeros_like(x)`` must not make a prior depend on the data x.
_SHAPE_ONLY = {
    torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_empty, torch.Tensor.new_full,
    torch.Tensor.new_tensor, torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
    torch.rand_like, torch.randn_like, torch.randint_like,
}


def _is_size(value: Any) -> bool:
    return isinstance(value, torch.Size)


def _detach_keeping_sizes(value: Any) -> Any:
    """`detach_provenance`, except that a `torch.Size` stays one.

    Pyro's version flattens it into a plain tuple, and a plain tuple means data where a size was meant:
    ``loc.new(torch.Size([]))`` is a scalar, ``loc.new(())`` an empty tensor. Every ``Cauchy`` (so every
    ``HalfCauchy``) whose scale depends on a site samples with ``loc.new(shape)``, which then came out
    empty (a horseshoe's global scale ``HalfCauchy(sigma * c)``).
    """
    return tree_map(lambda v: v._t if isinstance(v, ProvenanceTensor) else v, value, is_leaf=_is_size)


def _torch_function(cls, func, types, args=(), kwargs=None, indexings: list | None = None):
    """`ProvenanceTensor.__torch_function__`, except that shape-only functions ignore their template and
    sizes stay `torch.Size` both ways (``x.shape`` is a `torch.Size`, not a tuple); an indexing by tagged
    indices is recorded in `indexings` (see `Extraction.indexings`)."""
    kwargs = kwargs or {}
    if func is torch.Tensor.__getitem__ and indexings is not None and len(args) == 2:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        tags = tuple(get_provenance(i) for i in index)
        if any(tags):
            indexings.append((get_provenance(args[0]), tags))
    _args, _kwargs = _detach_keeping_sizes([args, kwargs])
    ret = func(*_args, **_kwargs)
    if _is_size(ret):
        return ret
    if func in _SHAPE_ONLY:
        return track_provenance(ret, get_provenance([args[1:], kwargs]))
    return track_provenance(ret, get_provenance([args, kwargs]))


@contextlib.contextmanager
def _shape_only_functions(indexings: list):
    original = ProvenanceTensor.__dict__["__torch_function__"]
    ProvenanceTensor.__torch_function__ = classmethod(functools.partial(_torch_function, indexings=indexings))
    try:
        yield
    finally:
        ProvenanceTensor.__torch_function__ = original


def _run(model: Callable, kwargs: dict, x: Extraction, seed: int):
    tracker = _Provenance(x)
    handle = torch.nn.modules.module.register_module_forward_hook(_module_hook(tracker))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.random.fork_rng())
            stack.enter_context(torch.no_grad())
            stack.enter_context(pyro.validation_enabled(False))
            stack.enter_context(pyro.get_param_store().scope())
            stack.enter_context(_record_constructor_args())
            stack.enter_context(_shape_only_functions(x.indexings))
            torch.manual_seed(seed)
            with tracker:
                trace = poutine.trace(model).get_trace(**kwargs)
    finally:
        handle.remove()
    return trace, tracker


def _in_markov(site: dict) -> bool:
    """Whether a traced site ran inside ``pyro.markov`` (its messenger marks the site's ``infer``)."""
    return bool(site["infer"].get("_markov_depth"))


def _is_number_like(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or isinstance(value, torch.Tensor)


def extract(model: Callable, kwargs: dict, spec_fields: set[str] | None = None, seed: int = 0,
            probe: bool = True) -> Extraction:
    """Trace `model(**kwargs)` once and read sites, dependencies, plates, hyperparameters and covariates.

    With `probe`, constants matched to options by value are checked by a second run in which each of
    those options has a value of its own (see `_match_lost_hyperparameters`).

    Raises whatever the model raises when it cannot run on `kwargs` (the caller turns it into one line).
    """
    # Tagged floats are 0-d tensors; a model that insists on Python floats is run again with only its
    # data tagged, then untagged; hyperparameters are then matched by value.
    attempts = [_tag(kwargs, spec_fields), _tag(kwargs, spec_fields, hyper_tags=False), (kwargs, {}, {})]
    for attempt, (tagged, hyper, data) in enumerate(attempts):
        x = Extraction()
        try:
            trace, tracker = _run(model, tagged, x, seed)
            break
        except Exception:
            if attempt == len(attempts) - 1:
                raise
    x.hyper_values, x.data_values = dict(hyper), dict(data)

    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        for f in frames:
            # a subsampled plate is labelled with the data's size, not the mini-batch's
            x.plates.setdefault(f.name, {"size": int(f.full_size or f.size), "dim": f.dim})
        plates = tuple(f.name for f in frames)
        fn = site["fn"]
        if site["infer"].get("_deterministic"):
            x.sites[name] = Site(name, "deterministic", None, [], tracker.value_sources.get(name, frozenset()) - {name},
                                 plates, markov=_in_markov(site))
            continue
        base = _base(fn)
        try:
            sources = get_provenance(fn.log_prob(site["value"])) - {name}
        except Exception as exc:  # e.g. observed data whose shape does not fit the plate
            raise ValueError(f"site {name!r} cannot score its value: {exc}") from exc
        args = []
        for arg_name, value in base.__dict__.get("_plates_args", []):
            if not _is_number_like(value):
                continue
            prov = get_provenance(value)
            args.append(Arg(arg_name, prov, None if prov else detach_provenance(value),
                            _verbatim(value, prov, trace, x)))
            sources |= prov
        support = getattr(fn, "support", None)
        discrete = bool(support is not None and support.is_discrete)
        observed = bool(site["is_observed"])
        enumerated = (not observed and discrete and getattr(fn, "has_enumerate_support", False)) or (
            site["infer"].get("enumerate") in ("parallel", "sequential"))
        x.sites[name] = Site(name, "observed" if observed else "latent", type(base).__name__, args,
                             frozenset(sources), plates, discrete, bool(enumerated), markov=_in_markov(site))
    prober = functools.partial(extract, model, spec_fields=spec_fields, seed=seed, probe=False) if probe else None
    _match_lost_hyperparameters(x, kwargs, spec_fields, prober)
    return x


def _match_lost_hyperparameters(x: Extraction, kwargs: dict, spec_fields: set[str] | None,
                                probe: Callable[[dict], Extraction] | None = None) -> None:
    """Give back to a float option the constant arguments that are its value, when provenance lost the
    option's tag (``torch.full((K,), gamma)`` and ``float(alpha)`` drop it).

    A constant equal to one or more options' value is checked by `probe`, a second run in which each of
    those options has a value of its own: the argument that moves with an option is that option's, one
    that does not move is a literal of the program. Without a second run (none given, or it fails or
    changes the program) a value that only one option has is that option's, as before; one that several
    options share stays the number, said in one warning. Options whose tag reached a site, or a site's
    scale or mask, are accounted for and never matched.
    """
    seen = {t for s in x.sites.values() for t in s.sources} | set(x.control)
    candidates = {
        k: float(v) for k, v in kwargs.items()
        if isinstance(v, float) and not isinstance(v, bool) and HYPER + k not in seen
        and not (spec_fields and k in spec_fields)
    }
    lost = [(site, position, [k for k, v in candidates.items() if math.isclose(v, value, rel_tol=1e-6)])
            for site, position, value in _lost_constants(x)]
    lost = [(site, position, matches) for site, position, matches in lost if matches]
    if not lost:
        return
    keys = sorted({k for _, _, matches in lost for k in matches})
    moved = {k: _moved(candidates[k], i) for i, k in enumerate(keys)}
    probed = _probe(probe, {**kwargs, **moved})
    for site, position, matches in lost:
        followed = _followed(probed, site, position, matches, moved)
        if followed is None and len(matches) == 1:
            followed = matches[0]
        elif followed is None and probe is not None:
            _warn_unattributed(site, position, matches, candidates[matches[0]])
        if followed:
            arg = site.args[position]
            arg.sources, arg.constant = frozenset({HYPER + followed}), None
            site.sources = site.sources | arg.sources
            x.hyper_values.setdefault(followed, candidates[followed])


def _lost_constants(x: Extraction):
    """(site, argument position, value) of every constant argument that is one number (all entries equal)."""
    for site in x.sites.values():
        for position, arg in enumerate(site.args):
            if arg.sources or arg.constant is None:
                continue
            value = arg.constant
            if isinstance(value, torch.Tensor):
                if value.numel() == 0 or not bool((value == value.reshape(-1)[0]).all()):
                    continue
                value = value.reshape(-1)[0]
            yield site, position, float(value)


def _moved(value: float, i: int) -> float:
    """The `i`-th option's value in the second run: its own, a few per cent off the shared one."""
    step = (i + 1) / 64
    return value * (1 + step) if value != 0 else step


def _probe(probe: Callable[[dict], Extraction] | None, kwargs: dict) -> Extraction | None:
    if probe is None:
        return None
    try:
        return probe(kwargs)
    except Exception:  # the model refuses the moved values: no second opinion
        return None


def _followed(probed: Extraction | None, site: Site, position: int, matches: list[str],
              moved: dict[str, float]) -> str | None:
    """The option whose moved value the argument took in the second run; ``""`` when it kept its value
    (a literal); ``None`` when the second run cannot tell (missing, or a different program)."""
    if probed is None or site.name not in probed.sites:
        return None
    args = probed.sites[site.name].args
    if len(args) != len(site.args) or args[position].name != site.args[position].name:
        return None
    arg = args[position]
    tags = {t[len(HYPER):] for t in arg.sources if t.startswith(HYPER)}
    if len(tags & set(matches)) == 1:
        return (tags & set(matches)).pop()
    value = next((v for s, p, v in _lost_constants(probed) if s.name == site.name and p == position), None)
    if value is None:
        return None
    hits = [k for k in matches if math.isclose(moved[k], value, rel_tol=1e-6)]
    if len(hits) == 1:
        return hits[0]
    original = site.args[position].constant
    if isinstance(original, torch.Tensor):
        original = original.reshape(-1)[0]
    return "" if not hits and math.isclose(float(original), value, rel_tol=1e-6) else None


def _warn_unattributed(site: Site, position: int, matches: list[str], value: float) -> None:
    names = ", ".join(repr(k) for k in matches[:-1]) + f" and {matches[-1]!r}"
    warnings.warn(f"plates: {site.name}'s argument {site.args[position].name} is {number(value)}, the value of the options "
                  f"{names}, and a second run could not tell which one it is; it is drawn as the number",
                  stacklevel=4)


def _verbatim(value: Any, sources: frozenset, trace: Any, x: Extraction) -> bool:
    """Whether an argument is the value of one of its sources as is, up to broadcasting and unit axes
    (``mu``, ``mu.unsqueeze(-1)``, ``mu.expand(n)``), rather than computed from it (``2 * mu``). Without a
    value to compare with, it is taken as is."""
    if not sources:
        return True
    values = [_source_value(tag, trace, x) for tag in sources]
    values = [v for v in values if v is not None]
    return not values or any(_same_values(value, v) for v in values)


def _source_value(tag: str, trace: Any, x: Extraction) -> Any:
    if tag.startswith(HYPER):
        return x.hyper_values.get(tag[len(HYPER):])
    if tag.startswith(DATA):
        return x.data_values.get(tag[len(DATA):])
    node = trace.nodes.get(tag)
    return None if node is None else node.get("value")


def _same_values(arg: Any, source: Any) -> bool:
    try:
        a = torch.as_tensor(detach_provenance(arg), dtype=torch.float64)
        s = torch.as_tensor(detach_provenance(source), dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return True
    if a.shape != s.shape:
        a, s = a.squeeze(), s.squeeze()
    try:
        s = torch.broadcast_to(s, a.shape)
    except RuntimeError:
        return False
    return bool(torch.allclose(a, s, rtol=1e-6, atol=0.0, equal_nan=True))
