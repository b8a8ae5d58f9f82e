"""A network's `ModelSpec`: its evidence field, checked against the network (known variables and states,
few enough nodes to enumerate, evidence of non-zero probability). `BayesNet.spec` and the registered
``bayes_net`` model both build on it.

    >>> from ppl_models.bayes_net import load
    >>> load("sprinkler").spec.name
    'bayes_net[sprinkler]'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from ..data import DataError, Field
from ..registry import ModelSpec
from .queries import check_enumerable, describe_evidence

if TYPE_CHECKING:
    from .network import BayesNet

ENGINES = ("nuts", "hmc", "svi", "map")
EVIDENCE_DOC = "observed nodes: {variable: state name or index}"
DESCRIPTION = "Discrete Bayesian network: each node ~ Categorical(CPT row given its parents); evidence observed"


def check_possible(net: "BayesNet", evidence: Mapping[str, str]) -> None:
    """`DataError` (field ``evidence``) when the evidence has probability zero under the network: every
    engine would otherwise normalise 0/0 into an invented posterior. The same words as `BayesNet.query`."""
    if evidence and not math.isfinite(net.evidence_probability(evidence, log=True)):
        raise DataError("evidence", f"{describe_evidence(evidence)} has probability zero under network "
                        f"{net.name!r}")


def _evidence_check(net: "BayesNet"):
    def check(evidence: Any) -> str | None:
        try:
            checked = net.check_evidence(evidence)
            check_enumerable(net, checked, reserved=1)
            check_possible(net, checked)
        except DataError as exc:
            return exc.problem
        return None

    return check


def make_spec(net: "BayesNet") -> ModelSpec:
    """A `ModelSpec` for one network (not registered): ``fit(net.spec, data={"evidence": {...}})``."""
    return ModelSpec(
        name=f"bayes_net[{net.name}]",
        model=net.model,
        guide=None,
        default_data=lambda seed=0: {"evidence": {}},
        engines=ENGINES,
        description=f"{DESCRIPTION} ({net.name})",
        fields=(Field("evidence", "object", (), EVIDENCE_DOC, required=False, check=_evidence_check(net)),),
    )
