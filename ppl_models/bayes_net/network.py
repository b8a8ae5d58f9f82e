"""`BayesNet`: a DAG of named discrete variables with conditional probability tables, as a Pyro program.

A network is three dictionaries:

- ``states``: variable -> its state names, e.g. ``{"rain": ["yes", "no"]}``;
- ``parents``: variable -> its parents, in the order the CPT's axes follow;
- ``cpts``: variable -> an array shaped ``(*parent cardinalities, cardinality)``: one row
  P(variable | parents = that configuration) per parent configuration, each row summing to 1.

The constructor checks all of it once (unknown or missing parents, cycles, duplicate states, CPT shapes,
negative entries, rows not summing to 1) and raises one `DataError` naming the variable and the problem.
`BayesNet.model` is the network compiled into a Pyro program: one ``pyro.sample`` per node in
topological order, ``Categorical`` with the CPT row picked by the parents' values, evidence observed. Each
site declares its state names as ``infer={"states": [...]}``, so that `inference.fit`'s summary reads
``P(rain=yes)`` instead of a mean of state indices (the model still imports nothing of the engines).

Example:
    >>> net = BayesNet({"D": ["yes", "no"], "T": ["pos", "neg"]}, {"D": [], "T": ["D"]},
    ...                {"D": [0.01, 0.99], "T": [[0.95, 0.05], [0.05, 0.95]]}, name="disease_test")
    >>> round(net.query(["D"], {"T": "pos"})["D"]["yes"], 5)
    0.16102
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from ..data import DataError

ROW_TOLERANCE = 1e-4  # a CPT row may miss 1 by this much (rounding in published tables); it is renormalised
DTYPE = torch.float64  # probabilities to 1e-6 and below need double precision


class BayesNet:
    """A discrete Bayesian network and its Pyro program.

    Args:
        states: variable -> list of state names (at least one; unique).
        parents: variable -> list of parent variables (each declared in `states`). Variables missing
            from `parents` are roots.
        cpts: variable -> array-like shaped ``(*[len(states[p]) for p in parents[v]], len(states[v]))``.
        name: the network's name (for messages and listings).

    Raises:
        DataError: naming the variable and the problem.
    """

    def __init__(self, states: Mapping[str, Sequence[str]], parents: Mapping[str, Sequence[str]],
                 cpts: Mapping[str, Any], name: str = "network"):
        self.name = name
        self.states: dict[str, list[str]] = {}
        for var, values in states.items():
            if not isinstance(var, str) or not var:
                raise DataError("network", f"variable names must be non-empty strings, got {var!r}")
            values = [str(s) for s in values]
            if not values:
                raise DataError(var, "has no states")
            dup = sorted({s for s in values if values.count(s) > 1})
            if dup:
                raise DataError(var, f"lists state {dup[0]!r} more than once")
            self.states[var] = values
        for var in parents:
            if var not in self.states:
                raise DataError(var, "has parents but is not a declared variable")
        self.parents: dict[str, list[str]] = {}
        for var in self.states:
            ps = [str(p) for p in parents.get(var, [])]
            for p in ps:
                if p not in self.states:
                    raise DataError(var, f"parent {p!r} is not a variable of the network")
                if p == var:
                    raise DataError(var, "is its own parent (a cycle)")
            if len(set(ps)) != len(ps):
                raise DataError(var, "lists a parent more than once")
            self.parents[var] = ps
        self.order: list[str] = _topological_order(self.parents)
        for var in cpts:
            if var not in self.states:
                raise DataError(var, "has a CPT but is not a declared variable")
        self.cpts: dict[str, torch.Tensor] = {var: self._check_cpt(var, cpts.get(var)) for var in self.states}
        # the program takes log-probabilities: `probs=` would clamp structural zeros to machine epsilon
        self.log_cpts: dict[str, torch.Tensor] = {var: cpt.log() for var, cpt in self.cpts.items()}
        self.index: dict[str, dict[str, int]] = {v: {s: i for i, s in enumerate(ss)} for v, ss in self.states.items()}

    # ---- construction checks -----------------------------------------------------------------------
    def _check_cpt(self, var: str, table: Any) -> torch.Tensor:
        if table is None:
            raise DataError(var, "has no conditional probability table")
        try:
            array = np.asarray(table, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(var, f"CPT cannot be read as numbers ({exc})") from None
        shape = tuple(len(self.states[p]) for p in self.parents[var]) + (len(self.states[var]),)
        if array.shape != shape:
            if array.size == int(np.prod(shape)):
                array = array.reshape(shape)  # a flat list in row order
            else:
                given = " x ".join(self.parents[var] + [var])
                raise DataError(var, f"CPT has shape {array.shape}, expected {shape} ({given})")
        if not np.all(np.isfinite(array)):
            raise DataError(var, "CPT contains NaN or an infinite value")
        if np.any(array < 0):
            raise DataError(var, f"CPT has a negative entry ({array.min():g})")
        sums = array.sum(-1)
        bad = np.abs(sums - 1) > ROW_TOLERANCE
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            config = ", ".join(f"{p}={self.states[p][i]}" for p, i in zip(self.parents[var], where))
            row = f"the row for {config}" if config else "its table"
            raise DataError(var, f"CPT {row} sums to {sums[where]:.6g}, not 1")
        return torch.as_tensor(array / sums[..., None], dtype=DTYPE)

    # ---- structure -----------------------------------------------------------------------------------
    @property
    def variables(self) -> list[str]:
        """The variables in topological order (parents before children)."""
        return list(self.order)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(parent, child) pairs."""
        return [(p, v) for v in self.order for p in self.parents[v]]

    def cardinality(self, var: str) -> int:
        return len(self.states[var])

    def __repr__(self) -> str:
        return f"BayesNet({self.name!r}: {len(self.states)} variables, {len(self.edges)} edges)"

    # ---- evidence ----------------------------------------------------------------------------------
    def check_evidence(self, evidence: Mapping[str, Any] | None, field: str = "evidence") -> dict[str, str]:
        """Evidence as ``{variable: state name}``; a state may be given by name or by integer index.

        Raises `DataError` (field ``evidence``) naming an unknown variable or state.
        """
        if evidence is None:
            return {}
        if not isinstance(evidence, Mapping):
            raise DataError(field, f"must map variable names to states, got {type(evidence).__name__}")
        out = {}
        for var, state in evidence.items():
            self._check_variable(var, field)
            out[var] = self._check_state(var, state, field)
        return out

    def _check_variable(self, var: Any, field: str = "evidence") -> str:
        if var not in self.states:
            raise DataError(field, f"unknown variable {var!r}; network {self.name!r} has "
                            f"{', '.join(self.order)}")
        return var

    def _check_state(self, var: str, state: Any, field: str = "evidence") -> str:
        if isinstance(state, torch.Tensor) and state.numel() == 1:
            state = state.item()
        if isinstance(state, np.generic):
            state = state.item()
        if isinstance(state, str):
            if state in self.index[var]:
                return state
        elif isinstance(state, int) and not isinstance(state, bool) and 0 <= state < self.cardinality(var):
            return self.states[var][state]
        raise DataError(field, f"{var!r} has no state {state!r}; its states are {', '.join(self.states[var])}")

    def _observed(self, evidence: Mapping[str, str]) -> dict[str, torch.Tensor]:
        return {v: torch.tensor(self.index[v][s]) for v, s in evidence.items()}

    # ---- the Pyro program -------------------------------------------------------------------------
    def model(self, evidence: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
        """The network as a Pyro program: each node, in topological order, is drawn from the CPT row its
        parents' values pick; evidence nodes are observed. Returns the values (state indices)."""
        observed = self._observed(self.check_evidence(evidence))
        values: dict[str, torch.Tensor] = {}
        for var in self.order:
            log_cpt = self.log_cpts[var]
            parent_values = tuple(values[p] for p in self.parents[var])
            row = Vindex(log_cpt)[parent_values + (slice(None),)] if parent_values else log_cpt
            # logits may be -inf (a zero in the CPT), which the default argument check rejects; the state
            # names ride in the infer dict (plain Pyro, ignored by every handler) for the engines' summaries
            values[var] = pyro.sample(var, dist.Categorical(logits=row, validate_args=False), obs=observed.get(var),
                                      infer={"states": self.states[var]})
        return values

    # ---- queries (see queries.py) ---------------------------------------------------------------
    def query(self, variables: Sequence[str] | str | None = None, evidence: Mapping[str, Any] | None = None,
              method: str = "exact", num_samples: int = 10_000, seed: int | None = None):
        """Posterior marginals P(X | evidence) for each variable X: ``{X: {state: probability}}``.

        Args:
            variables: one name, a list, or ``None`` for every variable not in the evidence.
            evidence: ``{variable: state}`` (state name or index).
            method: ``exact`` (every other node summed out by Pyro's enumeration and tensor contraction),
                ``importance`` (likelihood weighting: non-evidence nodes drawn from their CPTs, each draw
                weighted by the probability of the evidence given its parents) or ``ancestral`` (forward
                samples of the whole network, those disagreeing with the evidence rejected).
            num_samples: draws for the sampling methods.
            seed: seed of the sampling methods (``None`` uses the global torch generator).

        Returns:
            `Marginals` (a dict); for the sampling methods its ``ess`` and ``stderr`` attributes hold the
            effective sample size and each probability's Monte-Carlo standard error.
        """
        from . import queries

        return queries.query(self, variables, evidence, method=method, num_samples=num_samples, seed=seed)

    def mpe(self, evidence: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The most probable explanation: the jointly most probable states of every non-evidence node."""
        from . import queries

        return queries.mpe(self, evidence)

    def evidence_probability(self, evidence: Mapping[str, Any] | None = None, log: bool = False) -> float:
        """P(evidence), every other node summed out exactly (``log=True``: its natural log)."""
        from . import queries

        value = queries.log_evidence(self, evidence)
        return value if log else float(np.exp(value))

    def sample(self, num_samples: int = 1, seed: int | None = None) -> dict[str, list[str]]:
        """Forward (ancestral) draws of every node: ``{variable: [state, ...]}``."""
        from . import queries

        draws = queries.forward_draws(self, num_samples, seed)
        return {v: [self.states[v][i] for i in draws[v].tolist()] for v in self.order}

    @cached_property
    def spec(self):
        """A `ModelSpec` of this network (data: ``evidence``), usable with ``inference.fit``."""
        from .specs import make_spec

        return make_spec(self)


def _topological_order(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm, keeping the declaration order among ready nodes; `DataError` on a cycle."""
    children: dict[str, list[str]] = {v: [] for v in parents}
    waiting = {v: len(ps) for v, ps in parents.items()}
    for v, ps in parents.items():
        for p in ps:
            children[p].append(v)
    ready = [v for v in parents if waiting[v] == 0]
    order: list[str] = []
    while ready:
        v = ready.pop(0)
        order.append(v)
        for c in children[v]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    if len(order) < len(parents):
        cycle = _find_cycle({v: ps for v, ps in parents.items() if v not in order})
        raise DataError("network", f"the graph has a cycle: {' -> '.join(cycle)}")
    return order


def _find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among nodes that all lie on or above a cycle (every node has a parent in the set)."""
    node = next(iter(parents))
    seen: list[str] = []
    while node not in seen:
        seen.append(node)
        node = next(p for p in parents[node] if p in parents)
    cycle = seen[seen.index(node):] + [node]
    return cycle[::-1]  # parent -> child direction
