"""The enumeration tutorial's HMM as written there (`x = 0`, then `transition[x]` at each step of a
`pyro.markov` loop): the suite's fit and `to_arviz`, and its draws of the hidden states against stock
Pyro's way of drawing them, `infer_discrete` once per posterior draw. Prints a table (not a test).

    PYTHONPATH=. python benchmarks/enumerated_hmm.py [--steps 30] [--chains 2] [--draws 300] [--seed 0]

Rows:
- ``fit``: `inference.fit(method="nuts")` with `num_warmup` = `num_samples` = draws; it includes drawing
  the hidden states for every posterior draw (`sample_discrete`).
- ``to_arviz``: the pointwise log-likelihood (each observation's density with the hidden states summed
  out), the posterior predictive and the prior groups.
- ``hidden states``: the states for every posterior draw, by the suite's recorded and vectorised program
  against Pyro's `infer_discrete` looped over the draws; the last column is the largest difference of a
  state's frequency between the two, in units of its Monte-Carlo standard error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import config_enumerate, infer_discrete

from inference import fit
from inference.predictive import sample_discrete
from inference.structure import inspect_model


def hmm_model(data, data_dim, hidden_dim=3):  # tutorial/source/enumeration.ipynb, hidden_dim 10 -> 3
    with pyro.plate("hidden_state", hidden_dim):
        transition = pyro.sample("transition", dist.Dirichlet(0.5 * torch.ones(hidden_dim)))
        emission = pyro.sample("emission", dist.Dirichlet(0.5 * torch.ones(data_dim)))

    x = 0  # initial state
    for t, y in pyro.markov(enumerate(data)):
        x = pyro.sample(f"x_{t}", dist.Categorical(transition[x]),
                        infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Categorical(emission[x]), obs=y)


def _pyro_states(data: dict, samples: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    """Stock Pyro: `infer_discrete` of the model conditioned on each posterior draw, one draw at a time."""
    chains, draws = samples["transition"].shape[:2]
    out = {f"x_{t}": np.empty((chains, draws), dtype=np.int64) for t in range(steps)}
    for c in range(chains):
        for d in range(draws):
            given = {k: torch.as_tensor(v[c, d]) for k, v in samples.items()}
            model = infer_discrete(config_enumerate(poutine.condition(hmm_model, given)), first_available_dim=-2)
            trace = poutine.trace(model).get_trace(**data)
            for t in range(steps):
                out[f"x_{t}"][c, d] = int(trace.nodes[f"x_{t}"]["value"])
    return out


def _largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], states: int) -> float:
    """The largest |frequency difference| of a state between two sets of draws, in standard errors."""
    worst = 0.0
    for name in a:
        fa = np.bincount(a[name].reshape(-1), minlength=states) / a[name].size
        fb = np.bincount(b[name].reshape(-1), minlength=states) / b[name].size
        pooled = (fa + fb) / 2
        se = np.sqrt(pooled * (1 - pooled) * (1 / a[name].size + 1 / b[name].size))
        worst = max(worst, float(np.max(np.abs(fa - fb) / np.maximum(se, 1e-12))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = {"data": torch.as_tensor(np.random.default_rng(args.seed).integers(0, 4, args.steps)), "data_dim": 4}

    start = time.perf_counter()
    post = fit(hmm_model, data, method="nuts", num_samples=args.draws, num_warmup=args.draws,
               num_chains=args.chains, seed=args.seed, progress=False)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    post.to_arviz()
    arviz_s = time.perf_counter() - start

    continuous = {k: post.samples[k] for k in ("transition", "emission")}
    structure = inspect_model(hmm_model, data)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    ours = sample_discrete(hmm_model, data, structure, continuous)
    ours_s = time.perf_counter() - start
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    pyros = _pyro_states(data, continuous, args.steps)
    pyro_s = time.perf_counter() - start
    sigmas = _largest_difference({k: ours[k] for k in pyros}, pyros, 3)

    n = args.chains * args.draws
    print(f"enumeration tutorial's HMM, {args.steps} steps, {args.chains} chains x ({args.draws} + {args.draws}), "
          f"seed {args.seed}; path: {post.notes[0] if post.notes else '-'}")
    print("| work | suite s | stock Pyro s | x | agreement |")
    print("|---|---|---|---|---|")
    print(f"| fit (sampling and states) | {fit_s:.1f} | | | |")
    print(f"| to_arviz (log-likelihood, predictive, prior) | {arviz_s:.1f} | | | |")
    print(f"| hidden states for {n} draws | {ours_s:.1f} | {pyro_s:.1f} | {pyro_s / ours_s:.1f} | "
          f"largest state-frequency difference {sigmas:.1f} se |")
    for line in post.problems():
        print(f"problem: {line}")


if __name__ == "__main__":
    main()
