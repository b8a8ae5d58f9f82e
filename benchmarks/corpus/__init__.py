"""A corpus of Pyro programs as their authors wrote them, with data, for testing and benchmarking NUTS.

Each module is one program copied from Pyro's examples and tutorials (or, where Pyro has none, written the
way users write it); its docstring names the source and says what was changed (only what had to be: data
embedded or generated instead of downloaded). `PROGRAMS` maps each name to a `Program`:

    >>> from benchmarks.corpus import PROGRAMS
    >>> program = PROGRAMS["lkj"]
    >>> sorted(program.data(seed=0))
    ['y']

and ``fit(program.model, data=program.data(), method="nuts")`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from . import (baseball, bayesian_regression, eight_schools_centred, eight_schools_noncentred, eight_schools_reparam,
               gmm, hierarchical_logistic, hmm, horseshoe, lkj, negbin_glm, poisson_glm)

__all__ = ["Program", "PROGRAMS"]


@dataclass(frozen=True)
class Program:
    """One program of the corpus.

    Attributes:
        name: the module's name.
        model: the Pyro callable, as its author wrote it (a function or a `PyroModule` instance).
        data: ``data(seed=0) -> dict``: keyword arguments for ``model(**data)`` (tensors; plain ints or an
            options namespace where the program takes them). Programs on real data ignore the seed.
        source: where the program comes from (a path in Pyro's repository, or a tutorial).
        idiom: the way of writing it the program exercises, in a few words (e.g. ``X @ b``).
        cheap: 4 chains x (300 + 300) of the suite's NUTS take under about 20 s on a 2-core machine.
    """

    name: str
    model: Callable[..., Any]
    data: Callable[..., dict]
    source: str
    idiom: str
    cheap: bool


def _program(module: ModuleType) -> Program:
    return Program(name=module.__name__.rsplit(".", 1)[-1], model=module.MODEL, data=module.data,
                   source=module.SOURCE, idiom=module.IDIOM, cheap=module.CHEAP)


PROGRAMS: dict[str, Program] = {p.name: p for p in map(_program, (
    baseball, eight_schools_centred, eight_schools_noncentred, eight_schools_reparam, bayesian_regression,
    poisson_glm, hierarchical_logistic, lkj, horseshoe, negbin_glm, gmm, hmm))}
