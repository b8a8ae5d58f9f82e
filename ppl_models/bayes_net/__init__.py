"""Discrete Bayesian networks as Pyro programs, with exact and approximate queries.

A network is a DAG of named discrete variables, each with a conditional probability table (CPT) given its
parents. Its generative story is ancestral sampling, one node at a time in topological order:

    for each node X, parents before children:
        X ~ Categorical(CPT_X[parents(X)])      # the CPT row picked by the parents' values
    the evidence nodes are observed: P(X_E = e) is the likelihood

and the joint is the product of the CPT entries, P(x_1..x_n) = prod_i P(x_i | parents(x_i)). Every
unobserved node is a latent discrete site: ``inference.fit`` sums them out exactly by enumeration and
draws them from the exact posterior with ``infer_discrete``. `BayesNet` also answers queries directly:
posterior marginals (exact, likelihood weighting, ancestral sampling), the most probable explanation
and the probability of the evidence.

Built-in networks: ``disease_test``, ``sprinkler``, ``student``, ``asia`` and ``alarm`` (37 nodes); any
BIF file by path; with pgmpy installed, every bnlearn network pgmpy bundles (``child``, ``insurance``,
``hailfinder``, ...) by name, read from its files without importing pgmpy.

Example:
    >>> from ppl_models import bayes_net
    >>> net = bayes_net.load("disease_test")
    >>> round(net.query("disease", {"test": "positive"})["disease"]["yes"], 6)   # 0.0095 / 0.059
    0.161017
    >>> round(net.evidence_probability({"test": "positive"}), 6)
    0.059
    >>> net.mpe({"test": "positive"})
    {'disease': 'no'}
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..data import DataError, Field, Option
from ..registry import ModelSpec, register
from .bif import parse_bif, read_bif, to_bif
from .network import BayesNet
from .queries import METHODS as QUERY_METHODS
from .queries import Marginals, check_enumerable
from .specs import DESCRIPTION, EVIDENCE_DOC, ENGINES, check_possible, make_spec

NETWORK_DIR = Path(__file__).parent / "networks"
BUILTIN = ("disease_test", "sprinkler", "student", "asia", "alarm")
DEFAULT_NETWORK = "sprinkler"


def _pgmpy_examples() -> Path | None:
    """pgmpy's folder of bundled bnlearn BIF files, found without importing pgmpy (None if absent)."""
    spec = importlib.util.find_spec("pgmpy")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "utils" / "example_models"
    return folder if folder.is_dir() else None


def available() -> list[str]:
    """Names `load` accepts: the built-in networks, then pgmpy's bundled bnlearn networks if installed."""
    extra = []
    folder = _pgmpy_examples()
    if folder is not None:
        extra = sorted(p.name[: -len(".bif.gz")] for p in folder.glob("*.bif.gz"))
    return list(BUILTIN) + [n for n in extra if n not in BUILTIN]


@lru_cache(maxsize=64)
def _load_cached(key: str) -> BayesNet:
    if key in BUILTIN:
        return read_bif(NETWORK_DIR / f"{key}.bif", name=key)
    path = Path(key).expanduser()
    if path.is_file():
        return read_bif(path)
    folder = _pgmpy_examples()
    if folder is not None and (folder / f"{key}.bif.gz").is_file():
        return read_bif(folder / f"{key}.bif.gz", name=key)
    if key.endswith((".bif", ".bif.gz")) or "/" in key:
        raise DataError("network", f"no such BIF file: {key}")
    raise DataError("network", f"unknown network {key!r}; known networks: {', '.join(available())}; "
                    "or give the path of a BIF file")


def load(name_or_bif_path: str | Path | BayesNet) -> BayesNet:
    """A network by name (see `available`), from a BIF file path, or a `BayesNet` passed through.

    Loaded networks are cached: loading the same name twice returns the same object.

    Raises:
        DataError: unknown name, missing file, or a malformed network (naming the variable and problem).
    """
    if isinstance(name_or_bif_path, BayesNet):
        return name_or_bif_path
    if not isinstance(name_or_bif_path, (str, Path)):
        raise DataError("network", f"must be a network name, a BIF path or a BayesNet, got "
                        f"{type(name_or_bif_path).__name__}")
    return _load_cached(str(name_or_bif_path))


def from_pgmpy(model: Any, name: str | None = None) -> BayesNet:
    """A `BayesNet` from a pgmpy ``DiscreteBayesianNetwork`` (pgmpy is an optional extra)."""
    try:
        import pgmpy.models  # noqa: F401  (only to fail clearly when pgmpy is missing)
    except ImportError:
        raise ImportError("from_pgmpy needs pgmpy: pip install 'ppl-suite[bayesnet]'") from None
    cpds = {cpd.variable: cpd for cpd in model.get_cpds()}
    missing = [v for v in model.nodes() if v not in cpds]
    if missing:
        raise DataError(str(missing[0]), "has no CPD in the pgmpy model")
    states = {str(v): [str(s) for s in cpd.state_names[v]] for v, cpd in cpds.items()}
    parents = {str(v): [str(p) for p in cpd.variables[1:]] for v, cpd in cpds.items()}
    for v in model.nodes():  # the graph's parents must be the CPD's conditioning variables
        if set(map(str, model.get_parents(v))) != set(parents[str(v)]):
            raise DataError(str(v), "the CPD's conditioning variables differ from the graph's parents")
    cpts = {}
    for v, cpd in cpds.items():
        values = cpd.get_values()  # (card, product of parent cards), last parent fastest
        shape = [len(states[str(p)]) for p in cpd.variables[1:]] + [len(states[str(v)])]
        cpts[str(v)] = values.T.reshape(shape)
    return BayesNet(states, parents, cpts, name=name or getattr(model, "name", None) or "pgmpy")


def parse_evidence(items: Sequence[str], net: str | BayesNet) -> dict[str, str]:
    """``["var=state", ...]`` (the command line's ``--evidence``) as ``{var: state}``, checked against `net`.

    Raises:
        DataError: (field ``evidence``) a malformed item, an unknown variable or state, or a variable
            given two different states.
    """
    net = load(net)
    out: dict[str, str] = {}
    for item in items:
        var, sep, state = str(item).partition("=")
        var, state = var.strip(), state.strip()
        if not sep or not var or not state:
            raise DataError("evidence", f"expected VARIABLE=STATE, got {item!r}")
        net.check_evidence({var: state})
        if var in out and out[var] != state:
            raise DataError("evidence", f"{var!r} is given twice, as {out[var]!r} and {state!r}")
        out[var] = state
    return out


# ---- the registered model --------------------------------------------------------------------------
def bayes_net(evidence: Mapping[str, Any] | None = None, network: str | BayesNet = DEFAULT_NETWORK
              ) -> dict[str, torch.Tensor]:
    """The network's Pyro program: each node drawn from its CPT row given its parents; evidence observed.

    `evidence` maps variable names to states (names or indices); `network` is a name, a BIF path or a
    `BayesNet`. Returns the node values (state indices).
    """
    return load(network).model(evidence)


def default_data(seed: int = 0) -> dict:
    """The sprinkler network with the grass observed wet (the data set is deterministic; `seed` unused)."""
    return {"evidence": {"wet_grass": "yes"}, "network": DEFAULT_NETWORK}


@dataclass(frozen=True)
class BayesNetSpec(ModelSpec):
    """The registered spec: validation checks the evidence against the chosen network."""

    def validate(self, data: Mapping[str, Any]) -> dict:
        out = super().validate(data)
        net = load(out["network"])
        out["evidence"] = net.check_evidence(out.get("evidence"))
        check_enumerable(net, out["evidence"], reserved=1)  # the engines' plate of draws takes one dimension
        check_possible(net, out["evidence"])
        return out


SPEC = register(
    BayesNetSpec(
        name="bayes_net",
        model=bayes_net,
        guide=None,
        default_data=default_data,
        engines=ENGINES,
        description=DESCRIPTION,
        fields=(Field("evidence", "object", (), EVIDENCE_DOC, required=False),),
        options={"network": Option(DEFAULT_NETWORK, "a built-in network name, a BIF file path or a BayesNet",
                                   kind="any")},
    )
)


__all__ = ["BayesNet", "Marginals", "load", "available", "read_bif", "parse_bif", "to_bif", "from_pgmpy",
           "parse_evidence", "bayes_net", "SPEC", "BUILTIN", "QUERY_METHODS", "make_spec"]
