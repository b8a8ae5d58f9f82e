"""The fast NUTS backend on the catalogue models that used to run it eagerly or not at all, against what
they ran before.

Factor analysis and PPCA factor a covariance by Cholesky, whose error check tracing would drop (compiled
now as a failure flag, `graph_passes.checks_as_output`); the softmax regression and the two-class model
read numbers from their data inside the model (recorded now as constants, `graph_passes.record`); the
Gaussian mixture and the mixture of Bernoullis have enumerated assignments, which Pyro's NUTS summed out
and the fast backend now sums out per chain (`potential._marginal_per_chain`). Per model, in one process,
same seed and budget, on the model's embedded default data: what the model ran before (`run_fast_mcmc`
with ``compile=False``, the eager leaf step and Python tree, for the first four; Pyro's NUTS with
``jit_compile=True`` for the two mixtures) and the default (`run_fast_mcmc`, compiled). Columns: wall
time, the sampling phase's leapfrog steps (all chains) over the wall time, bulk ESS of the log density
(identified in every model, unlike factor analysis's rotating loadings) per second, and that rate over
the one before.

    PYTHONPATH=. python benchmarks/catalogue_nuts.py                  # 2 chains x (100 + 100), seed 0, depth 6
    PYTHONPATH=. python benchmarks/catalogue_nuts.py --models ppca --chains 4
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np

from inference import fit
from inference.fast import run_fast_mcmc
from inference.structure import inspect_model
from ppl_models.registry import resolve

MODELS = ["factor_analysis", "ppca", "softmax_regression", "two_class", "gmm", "coin_mixture"]
# models with enumerated discrete sites ran Pyro's NUTS (JIT-compiled here, its faster setting) before the
# fast backend summed them out: that is their baseline
ENUMERATED = {"gmm", "coin_mixture"}


def run(name: str, chains: int, warmup: int, draws: int, seed: int, depth: int, compile: bool,
        pyro_backend: bool = False) -> dict:
    spec, fn, _ = resolve(name)
    data = spec.validate(spec.default_data(seed=0))
    start = time.perf_counter()
    if pyro_backend:
        post = fit(name, data, method="nuts", seed=seed, num_chains=chains, num_warmup=warmup, num_samples=draws,
                   max_tree_depth=depth, backend="pyro", jit_compile=True, progress=False)
        stats, how = post.sample_stats, "Pyro NUTS (jit_compile)"
    else:
        structure = inspect_model(fn, data)
        _, stats, notes = run_fast_mcmc(fn, data, structure, method="nuts", seed=seed, num_chains=chains,
                                        num_warmup=warmup, num_samples=draws, max_tree_depth=depth, progress=False,
                                        compile=compile)
        how = "batched, " + notes[0].split(", ")[1]
    seconds = time.perf_counter() - start
    ess = float(np.asarray(az.ess(np.asarray(stats["lp"], dtype=float), method="bulk")).item())
    return {"wall": seconds, "steps": float(np.sum(stats["n_steps"])) / seconds, "ess_s": ess / seconds, "how": how}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tree-depth", type=int, default=6,
                        help="factor analysis's rotation-invariant posterior runs depth-10 trees otherwise "
                             "(the test suite uses 6 too): 10 s per eager transition")
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args(argv)
    print(f"budget: {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), seed {args.seed}, "
          f"max tree depth {args.max_tree_depth}")
    print()
    print("| model | sampler | wall s | sampling leapfrog steps / wall s | ESS(lp)/s | x before |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        budget = (args.chains, args.warmup, args.samples, args.seed, args.max_tree_depth)
        eager = run(name, *budget, compile=False, pyro_backend=name in ENUMERATED)
        fast = run(name, *budget, compile=True)
        for r in (eager, fast):
            print(f"| {name} | {r['how']} | {r['wall']:.1f} | {r['steps']:.0f} | {r['ess_s']:.2f} | "
                  f"{r['ess_s'] / eager['ess_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
