"""Exact Bayesian-network queries: ppl_models.bayes_net (Pyro enumeration + contraction) vs pgmpy's
VariableElimination, on bnlearn networks. Prints a table of times and their ratio (not a test).

    python benchmarks/bayes_net.py [--networks alarm hailfinder] [--repeats 5]

For each network and evidence set, three queries are timed (median of repeats, after one warm-up call):

- ``all marginals``: P(X | e) for every unobserved X. Ours is one contraction and its gradient; pgmpy
  runs one ``query([X])`` per variable (its ``joint=False`` builds the joint of all query variables
  first, which needs tens of GiB on alarm).
- ``one marginal``: P(X | e) for the last node in topological order.
- ``P(evidence)``: ours ``evidence_probability``; pgmpy has no direct call, so it is left out.

The last column checks the answers agree (max absolute difference over every state of every marginal).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from ppl_models.bayes_net import from_pgmpy, load


def _timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up: contraction paths and pgmpy's caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _evidence_sets(net, rng: np.random.Generator) -> list[dict]:
    leaves = [v for v in net.order if not any(v in net.parents[c] for c in net.order)]
    picks = [{}]
    for k in (2, 5):
        chosen = rng.choice(leaves, size=min(k, len(leaves)), replace=False)
        picks.append({str(v): net.states[str(v)][int(rng.integers(net.cardinality(str(v))))] for v in chosen})
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["alarm", "hailfinder"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (the factors are tiny: thread start-up dominates)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    warnings.simplefilter("ignore")
    from pgmpy.inference import VariableElimination
    from pgmpy.utils import get_example_model

    rng = np.random.default_rng(args.seed)
    header = f"{'network':<11} {'nodes':>5} {'evidence':>8} {'query':<14} {'ours ms':>9} {'pgmpy ms':>9} " \
             f"{'pgmpy/ours':>10} {'max |diff|':>10}"
    print(header)
    print("-" * len(header))
    for name in args.networks:
        theirs = get_example_model(name)
        net = load(name)
        assert set(net.order) == set(theirs.nodes())
        ve = VariableElimination(theirs)
        for evidence in _evidence_sets(net, rng):
            hidden = [v for v in net.order if v not in evidence]
            t_ours, ours = _timed(lambda: net.query(hidden, evidence), args.repeats)
            t_pg, pg = _timed(lambda: {v: ve.query([v], evidence=evidence or None, show_progress=False)
                                       for v in hidden}, max(1, args.repeats // 2))
            diff = max(abs(ours[v][str(s)] - pg[v].values[i])
                       for v in hidden for i, s in enumerate(pg[v].state_names[v]))
            row = f"{name:<11} {len(net.order):>5} {len(evidence):>8}"
            print(f"{row} {'all marginals':<14} {1e3 * t_ours:>9.1f} {1e3 * t_pg:>9.1f} {t_pg / t_ours:>10.1f} "
                  f"{diff:>10.1e}")
            target = hidden[-1]
            t_ours, ours = _timed(lambda: net.query([target], evidence), args.repeats)
            t_pg, pg = _timed(lambda: ve.query([target], evidence=evidence or None, show_progress=False),
                              args.repeats)
            diff = max(abs(ours[target][str(s)] - pg.values[i]) for i, s in enumerate(pg.state_names[target]))
            print(f"{row} {'one marginal':<14} {1e3 * t_ours:>9.1f} {1e3 * t_pg:>9.1f} {t_pg / t_ours:>10.1f} "
                  f"{diff:>10.1e}")
            if evidence:
                t_ours, _ = _timed(lambda: net.evidence_probability(evidence), args.repeats)
                print(f"{row} {'P(evidence)':<14} {1e3 * t_ours:>9.1f} {'-':>9} {'-':>10} {'-':>10}")
        # the pgmpy object converted by from_pgmpy answers the same
        converted = from_pgmpy(theirs, name=name)
        a, b = converted.query(None), net.query(None)
        gap = max(abs(a[v][s] - b[v][s]) for v in a for s in a[v])
        print(f"{name:<11} from_pgmpy vs BIF reader: max |diff| {gap:.1e}")
    print("\nratio > 1: ours is faster. Times are medians; ours includes tracing the Pyro program each call.")


if __name__ == "__main__":
    main()
