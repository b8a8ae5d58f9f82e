"""How the fast backend adds the chain dimension, and what compiles it, on the catalogue's NUTS models.

For every catalogue model NUTS applies to, on its embedded default data, in one process, same seed and same
budget: `inference.fast.run_fast_mcmc` with the chain dimension added by an outer chain plate (the model
broadcasts over it) and by vectorising one chain's recorded potential (`torch.func.vmap`, the way in for
every program), each compiled by TorchScript and by the plain-Python compiler (`inference/fast/compile.py`).
Columns: wall time (inspection, recording, compiling, warm-up, sampling), leapfrog steps per second of the
whole run, ESS of the log density per second, and each column's ratio to the chain plate on TorchScript
(the default before vectorising existed).

    PYTHONPATH=. python benchmarks/batching.py                 # every model, 4 chains x (300 + 300)
    PYTHONPATH=. python benchmarks/batching.py --models coin gmm --warmup 500 --samples 500
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np

from inference.fast import NotBatchable, run_fast_mcmc
from inference.structure import inspect_model
from ppl_models.registry import resolve

MODELS = ["coin", "coin_mixture", "linear_regression", "logistic_regression", "softmax_regression", "gmm",
          "factor_analysis", "ppca", "two_class"]
WAYS = [("chain plate", "torchscript"), ("vectorised", "torchscript"), ("chain plate", "python"),
        ("vectorised", "python")]


def run(name: str, batching: str, compiler: str, chains: int, warmup: int, draws: int, seed: int,
        depth: int) -> dict | None:
    spec, fn, _ = resolve(name)
    data = spec.validate(spec.default_data(seed=0))
    start = time.perf_counter()
    structure = inspect_model(fn, data)
    try:
        _, stats, notes = run_fast_mcmc(fn, data, structure, method="nuts", seed=seed, num_chains=chains,
                                        num_warmup=warmup, num_samples=draws, max_tree_depth=depth,
                                        progress=False, batching=batching, compiler=compiler)
    except NotBatchable as exc:
        return {"how": f"not batchable: {exc}"}
    seconds = time.perf_counter() - start
    ess = float(np.asarray(az.ess(np.asarray(stats["lp"], dtype=float), method="bulk")).item())
    return {"wall": seconds, "steps": float(np.sum(stats["n_steps"])) / seconds, "ess_s": ess / seconds,
            "how": notes[0].split(", ", 1)[1]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tree-depth", type=int, default=6,
                        help="factor analysis's rotation-invariant posterior runs depth-10 trees otherwise")
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args(argv)
    print(f"budget: {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), seed {args.seed}, "
          f"max tree depth {args.max_tree_depth}\n")
    print("| model | batching | compiler | what ran | wall s | leapfrog steps/s | ESS(lp)/s | steps/s ratio "
          "| ESS/s ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        base = None
        for batching, compiler in WAYS:
            r = run(name, batching, compiler, args.chains, args.warmup, args.samples, args.seed,
                    args.max_tree_depth)
            if "wall" not in r:
                print(f"| {name} | {batching} | {compiler} | {r['how']} | | | | | |", flush=True)
                continue
            base = base or r
            print(f"| {name} | {batching} | {compiler} | {r['how']} | {r['wall']:.1f} | {r['steps']:.0f} | "
                  f"{r['ess_s']:.1f} | {r['steps'] / base['steps']:.2f} | {r['ess_s'] / base['ess_s']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
