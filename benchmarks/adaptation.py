"""The fast backend's warm-ups, pooled across the chains and per chain (Stan's), side by side.

`fit(method="nuts", adaptation=...)` on the nine models of `benchmarks/mcmc.py` (references: Stan's draws
from posteriordb, the exact Beta posterior, importance sampling) and on the corpus of Pyro programs of
`benchmarks/corpus` (reference: a NumPyro dense run of the program's port, 4 x 2000 after 1000 warm-up,
`benchmarks/numpyro_ports.py`; without NumPyro the corpus rows have no accuracy columns). Per model and
seed, the warm-ups (`--adaptations`: all of ``inference.fast.ADAPTATIONS`` by default, ``"per chain"``
always) run back to back in one process, same budget and seed; ESS is the smallest bulk ESS over the
model's scalar parameters, and the last columns give the accuracy against the reference. The summary lines
give the geometric mean of each warm-up's ESS per second over per chain's, over each group.

    PYTHONPATH=. python benchmarks/adaptation.py                         # everything, seed 0
    PYTHONPATH=. python benchmarks/adaptation.py --corpus gmm eight_schools_centred --models --seeds 3
    PYTHONPATH=. python benchmarks/adaptation.py --corpus eight_schools_centred --seeds 20 --adaptations pooled
"""

from __future__ import annotations

import argparse
import importlib.util

from scipy.stats import gmean

from inference.fast import ADAPTATIONS as ALL

from benchmarks import mcmc as nine
from benchmarks import user_programs as corpus

BASELINE = "per chain"
OTHERS = tuple(a for a in ALL if a != BASELINE)  # the warm-ups measured against it
HEADER = ("group", "model", "seed", "warm-up", "wall s", "min bulk ESS", "ESS/s", "/ per chain",
          "max abs(mean-ref)/ref sd", "sd ratio")


def _row(group: str, model: str, seed: int, adaptation: str, m: dict | None, ratio: float | None) -> str:
    fmt = corpus._fmt
    cells = [group, model, str(seed), adaptation, fmt(m["wall"]) if m else "-", fmt(m["ess"], 0) if m else "-",
             fmt(m["ess_s"]) if m else "-", fmt(ratio, 2), fmt(m.get("err"), 3) if m else "-",
             fmt(m.get("sd_ratio"), 3) if m else "-"]
    return "| " + " | ".join(cells) + " |"


def _report(group: str, name: str, seed: int, measured: dict, ratios: dict) -> None:
    """Print one row per warm-up of `measured`; add each one's ESS/s over per chain's to `ratios`
    (warm-up -> list)."""
    for adaptation in measured:
        ratio = None
        if adaptation != BASELINE:
            ratio = measured[adaptation]["ess_s"] / measured[BASELINE]["ess_s"]
            ratios.setdefault(adaptation, []).append(ratio)
        print(_row(group, name, seed, adaptation, measured[adaptation], ratio), flush=True)


def nine_models(names, seeds, budget, adaptations) -> dict[str, list[float]]:
    """The warm-ups on the models of `benchmarks/mcmc.py`; prints rows, returns the ESS/s ratios."""
    ratios: dict[str, list[float]] = {}
    for problem in nine.problems():
        if names and problem["name"] not in names:
            continue
        for seed in seeds:
            measured = {}
            for adaptation in adaptations:
                samples, seconds, _ = nine.run_suite(problem, *budget, seed, adaptation=adaptation)
                measured[adaptation] = nine._assess(samples, problem["reference"], seconds)
            _report("nine", problem["name"], seed, measured, ratios)
    return ratios


def corpus_programs(names, seeds, budget, reference_samples: int, adaptations) -> dict[str, list[float]]:
    """The warm-ups on the corpus; prints rows, returns the ESS/s ratios."""
    from benchmarks.corpus import PROGRAMS

    have_numpyro = importlib.util.find_spec("numpyro") is not None
    chains, warmup, draws = budget
    ratios: dict[str, list[float]] = {}
    for name, program in PROGRAMS.items():
        if names and name not in names:
            continue
        data = program.data(0)
        reference, sites = {}, None
        for seed in seeds:
            runs = {}
            for adaptation in adaptations:
                runs[adaptation], post = corpus.run_suite(program, data, dict(num_chains=chains, num_warmup=warmup,
                                                                              num_samples=draws), seed, None,
                                                          adaptation=adaptation)
                if sites is None:
                    sites = corpus.continuous_sites(program, data, post)
            if not reference and have_numpyro and corpus._has_port(name):
                ref = corpus.run_numpyro(corpus.reference_port(name), data, chains, 1000, reference_samples,
                                         seed + 1, True)
                reference = corpus.reference_of(corpus.identified(name, ref.draws), sites)
            measured = {}
            for adaptation, run in runs.items():
                if reference:
                    measured[adaptation] = corpus.measure(run, reference, sites, name)
                else:  # no reference: ESS and time only
                    from benchmarks.mcmc import _scalar_params
                    import arviz as az

                    params = _scalar_params({k: v for k, v in corpus.identified(name, run.draws).items() if k in sites})
                    ess = min(float(az.ess(v, method="bulk")) for v in params.values() if v.std() > 0)
                    measured[adaptation] = {"wall": run.seconds, "ess": ess, "ess_s": ess / run.seconds}
            _report("corpus", name, seed, measured, ratios)
    return ratios


def _warm_up_process() -> None:
    """One small fit, discarded: the process's first fit pays for imports and first compilations, which
    would otherwise be charged to whichever warm-up runs first."""
    problem = nine.problems()[0]
    nine.run_suite(problem, 2, 20, 20, 0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help="the nine models (all when given bare or left out; none with --corpus alone)")
    parser.add_argument("--corpus", nargs="*", default=None, help="corpus programs (all when given bare)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--reference-samples", type=int, default=2000)
    parser.add_argument("--adaptations", nargs="+", choices=OTHERS,
                        help="the warm-ups set beside per chain's (default: all)")
    args = parser.parse_args(argv)
    adaptations = (BASELINE,) + tuple(a for a in OTHERS if not args.adaptations or a in args.adaptations)
    run_nine = args.models is not None or args.corpus is None
    run_corpus = args.corpus is not None or args.models is None
    budget = (args.chains, args.warmup, args.samples)
    seeds = list(range(args.seeds))
    print(f"budget: {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), seeds {seeds}")
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    summary = []
    _warm_up_process()
    if run_nine:
        for adaptation, r in nine_models(args.models, seeds, budget, adaptations).items():
            summary.append(f"nine models: geometric mean of {adaptation} / per chain ESS/s {gmean(r):.2f} "
                           f"over {len(r)} runs")
    if run_corpus:
        for adaptation, r in corpus_programs(args.corpus, seeds, budget, args.reference_samples,
                                                      adaptations).items():
            summary.append(f"corpus: geometric mean of {adaptation} / per chain ESS/s {gmean(r):.2f} "
                           f"over {len(r)} runs")
    print()
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
