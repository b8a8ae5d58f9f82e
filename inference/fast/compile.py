"""The one seam through which the fast backend compiles: a recorded graph into a callable, and the NUTS
doubling loop around a compiled leaf step.

Two implementations, picked by name (`COMPILERS`):

- ``"torchscript"``: the graph is run by TorchScript's executor (``torch.jit.trace`` of the FX graph), the
  doubling loop is scripted (``torch.jit.script`` of `tree.TreeBuilder`), so a whole NUTS transition is one
  call from Python. The fastest on this machine (benchmarks/README.md), but torch 2.13 marks
  ``torch.jit.trace`` and ``torch.jit.script`` deprecated.
- ``"python"``: no TorchScript at all. The simplified FX graph is itself the compiled function (its
  generated Python calls the recorded ATen operations one after another: the model's Python, Pyro's
  handlers and the distributions' bookkeeping are gone all the same), and the doubling loop runs as plain
  Python around it.

``"auto"`` (the default) uses TorchScript where this torch has it and it reproduces the eager step, and
the Python implementation otherwise, so the default engine does not depend on TorchScript alone.
``torch.compile`` (Inductor) was measured and rejected: 24 s to compile the coin's leaf step for a 2 s run;
on the horseshoe's 4-chain gradient 17 s to compile for 94 microseconds a call against TorchScript's 126,
with the doubling loop left in Python (docs/decisions.md).

Whatever compiles a graph, the caller compares the result with the eager evaluation on probe inputs before
using it; a compiler that raises just means the eager (or the other) path is taken.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.fx as fx

__all__ = ["COMPILERS", "compile_graph", "compile_loop", "resolve"]

COMPILERS = ("auto", "torchscript", "python")


def _torchscript_available() -> bool:
    return hasattr(torch, "jit") and hasattr(torch.jit, "trace") and hasattr(torch.jit, "script")


def resolve(name: str) -> str:
    """The implementation `name` stands for: ``"auto"`` is TorchScript where torch has it."""
    if name not in COMPILERS:
        raise ValueError(f"compiler must be one of {', '.join(COMPILERS)}, not {name!r}")
    if name == "auto":
        return "torchscript" if _torchscript_available() else "python"
    return name


def compile_graph(graph: fx.GraphModule, example: tuple, compiler: str) -> Callable:
    """`graph` (a simplified FX graph of tensor operations) as a callable of the same inputs."""
    if resolve(compiler) == "python":
        graph.recompile()
        return graph
    with warnings.catch_warnings():  # (the deprecation notice of torch.jit, and tracer warnings)
        warnings.simplefilter("ignore")
        return torch.jit.trace(graph, tuple(t.clone() for t in example), check_trace=False)


def compile_loop(module: torch.nn.Module, compiler: str) -> torch.nn.Module | None:
    """`module` (written in TorchScript's subset of Python) scripted, or None where the compiler runs
    Python loops as Python (the caller then keeps the module itself)."""
    if resolve(compiler) == "python":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(module)
