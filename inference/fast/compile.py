"""The one seam through which the fast backend compiles: a recorded graph into a callable, and the NUTS
doubling loop around a compiled leaf step.

Three implementations, picked by name (`COMPILERS`):

- ``"torchscript"``: the graph is run by TorchScript's executor (``torch.jit.trace`` of the FX graph), the
  doubling loop is scripted (``torch.jit.script`` of `tree.TreeBuilder`), so a whole NUTS transition is one
  call from Python. It still launches one ATen kernel per recorded operation, at about 1-2 microseconds
  each; torch 2.13 marks ``torch.jit.trace`` and ``torch.jit.script`` deprecated.
- ``"inductor"``: the graph is compiled ahead of time by AOTInductor (``torch.export.export``, then
  ``torch._inductor.aoti_compile_and_package``, the documented AOTInductor entry points) into a shared
  library whose C++ runner calls a few fused kernels (scalar ones: `AOT_INDUCTOR_CONFIGS`): the horseshoe's
  leaf step, 188 operations, runs in about 25 microseconds instead of TorchScript's 340, the HMM's 1,746
  in 130 instead of 2,600. It needs a C++ compiler and takes 10-35 s per graph (some 20 s more for the
  first compile on a machine), so packages are cached on disk by a fingerprint of the graph, its
  constants (the data), the torch version and the processor (`package_cache`): a model compiles once,
  later fits load it in about 2 s. The doubling loop runs as plain Python around it
  (`tree.FlatTreeBuilder`), about 15 microseconds a leaf. It is called through
  the loaded package's ``loader.run`` on a flat list of tensors (the package's ``__call__`` re-parses its
  argument spec and flattens a pytree on every call, which doubles the cost of a small step).
- ``"python"``: no compiler at all. The simplified FX graph is itself the compiled function (its
  generated Python calls the recorded ATen operations one after another: the model's Python, Pyro's
  handlers and the distributions' bookkeeping are gone all the same), and the doubling loop runs as plain
  Python around it.

``"auto"`` (the default) uses TorchScript where this torch has it and it reproduces the eager step, and
the Python implementation otherwise, so the default engine does not depend on TorchScript alone. For
NUTS it then moves the leaf step to AOTInductor after a fixed number of transitions where the run's tree
sizes show that the compile pays for itself within the run (`ahead_of_time_pays`, a cost model of
measured constants, not the clock, so that the run remains a function of its seed; whether a package is
already cached does not enter it either). A compile that fails leaves TorchScript running, and the
backend note says why.
``torch.compile`` (Inductor behind TorchDynamo) was measured and rejected: its kernels are the ones
AOTInductor builds, but each call pays TorchDynamo's guards on every input and a Python wrapper that
checks every input's strides (210 microseconds a call on the horseshoe's leaf step, against 40 from
AOTInductor's C++ runner).

Whatever compiles a graph, the caller compares the result with the eager evaluation on probe inputs before
using it; a compiler that raises just means the eager (or the other) path is taken.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from typing import Callable, Iterator

import torch
import torch.fx as fx

__all__ = ["COMPILERS", "compile_graph", "compile_loop", "resolve", "Packaged", "ahead_of_time_pays",
           "ahead_of_time_available", "AOT_INDUCTOR_CONFIGS"]

COMPILERS = ("auto", "torchscript", "inductor", "python")


# What AOTInductor is asked for (``aoti_compile_and_package``'s documented `inductor_configs`): scalar C++
# kernels, no SIMD. A leaf step's tensors hold a few chains times a few dimensions, too short for vector
# loops, and Inductor writes each fused kernel twice (vectorised, with a scalar tail) and compiles both.
# Measured on the corpus's leaf steps (benchmarks/aot_configs.py), scalar against vectorised: the HMM's
# compile 32 s against 56 and its call 129 us against 160; the mixture's 12.1 s against 16.2, 22 us
# against 27; the horseshoe's 10.3 s against 11.9, 25 us against 31.
AOT_INDUCTOR_CONFIGS = {"cpp.simdlen": 1}

# ``"auto"`` starts with TorchScript and moves the NUTS leaf step to AOTInductor where the compile pays for
# itself within the run (`ahead_of_time_pays`). The cost model, from the corpus's horseshoe (188
# operations), Gaussian mixture (322) and HMM (1,746) on this two-core machine (docs/decisions.md):
TORCHSCRIPT_US_PER_OPERATION = 1.7    # a leaf step under TorchScript: 1.5-1.8 microseconds per operation
AOT_US_PER_CALL = 25.0                # under AOTInductor: 35-145 microseconds, about 25 + 0.07 per operation,
AOT_US_PER_OPERATION = 0.07           # the tree's Python around it included
AOT_COMPILE_S = 8.0                   # compiling it: 10 s, 12 s and 32 s, about 8 s + 15 ms per operation
AOT_COMPILE_S_PER_OPERATION = 0.015   # (once per machine, Inductor's first compile adds about 20 s)


def ahead_of_time_pays(operations: int, leaves: float, transitions: int, margin: float = 1.0) -> bool:
    """Whether compiling a leaf step of `operations` ATen operations ahead of time saves more than `margin`
    times what it costs over `transitions` more transitions of `leaves` leaf steps each. Measured constants
    only, never the clock: the decision, and so the run, is a function of the seed."""
    saved_us = leaves * transitions * (operations * (TORCHSCRIPT_US_PER_OPERATION - AOT_US_PER_OPERATION)
                                       - AOT_US_PER_CALL)
    return saved_us * 1e-6 > margin * (AOT_COMPILE_S + AOT_COMPILE_S_PER_OPERATION * operations)


def ahead_of_time_available() -> bool:
    """A C++ compiler for AOTInductor is on the path (``$CXX``, ``c++``, ``g++`` or ``clang++``)."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    return any(shutil.which(name) for name in names + ["c++", "g++", "clang++"])


def _torchscript_available() -> bool:
    return hasattr(torch, "jit") and hasattr(torch.jit, "trace") and hasattr(torch.jit, "script")


def resolve(name: str) -> str:
    """The implementation `name` stands for: ``"auto"`` is TorchScript where torch has it."""
    if name not in COMPILERS:
        raise ValueError(f"compiler must be one of {', '.join(COMPILERS)}, not {name!r}")
    if name == "auto":
        return "torchscript" if _torchscript_available() else "python"
    return name


def compile_graph(graph: fx.GraphModule, example: tuple, compiler: str,
                  inductor_configs: dict | None = None) -> Callable:
    """`graph` (a simplified FX graph of tensor operations) as a callable of the same inputs.
    `inductor_configs` are AOTInductor's settings (``"inductor"`` only; default `AOT_INDUCTOR_CONFIGS`)."""
    implementation = resolve(compiler)
    if implementation == "python":
        graph.recompile()
        return graph
    if implementation == "inductor":
        return _ahead_of_time(graph, example, AOT_INDUCTOR_CONFIGS if inductor_configs is None else inductor_configs)
    with warnings.catch_warnings():  # (the deprecation notice of torch.jit, and tracer warnings)
        warnings.simplefilter("ignore")
        return torch.jit.trace(graph, tuple(t.clone() for t in example), check_trace=False)


def compile_loop(module: torch.nn.Module, compiler: str) -> torch.nn.Module | None:
    """`module` (written in TorchScript's subset of Python) scripted, or None where the compiler runs
    Python loops as Python (the caller then keeps the module itself)."""
    if resolve(compiler) != "torchscript":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(module)


class Packaged:
    """A graph compiled by AOTInductor, called with the graph's inputs and returning its outputs as a tuple.

    Inputs are made contiguous first: the compiled kernels index them with the strides of the example they
    were compiled for (contiguous), and the NUTS tree hands over views (an edge unbound from a stack)."""

    def __init__(self, package):
        self.package = package
        self.loader = getattr(package, "loader", None)  # the C++ runner: a flat list in, a flat list out

    def __call__(self, *tensors: torch.Tensor) -> tuple:
        flat = [t.contiguous() for t in tensors]
        if self.loader is not None:
            return tuple(self.loader.run(flat))
        return tuple(self.package(*flat))


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Torch's compile loggers at ERROR for the block: Inductor logs its choices as warnings ("missing a
    c-shim implementation, using proxy executor as fallback"), which tell the user nothing they can act on."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _ahead_of_time(graph: fx.GraphModule, example: tuple, configs: dict) -> Packaged:
    """`graph` compiled by AOTInductor (with Inductor's settings `configs`) at the shapes of `example`, through
    the on-disk package cache."""
    from torch._inductor import aoti_compile_and_package, aoti_load_package  # (AOTInductor's documented API)

    from .package_cache import cached_package, fingerprint

    graph.recompile()
    example = tuple(t.clone().contiguous() for t in example)

    def build(path):
        with warnings.catch_warnings(), _quiet_loggers("torch._inductor", "torch._export", "torch.export",
                                                       "torch._dynamo", "torch.fx"):
            warnings.simplefilter("ignore")
            program = torch.export.export(graph, example)
            aoti_compile_and_package(program, package_path=str(path), inductor_configs=dict(configs))

    def load(path):
        # scalar kernels record no vector instruction set, which the loader reports as a mismatch with this
        # processor's (the package's name already depends on the processor: `fingerprint`)
        with _quiet_loggers("torch.export"):
            return Packaged(aoti_load_package(str(path)))

    return cached_package(fingerprint(graph, example, "aoti", repr(sorted(configs.items()))), build, load)
