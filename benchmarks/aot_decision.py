"""When ``compiler="auto"`` judges whether AOTInductor pays: the fit's wall time under different
judgements (`inference.fast.Judgement`: after which transition, asking what margin of the predicted
saving over the compile), first fit and refit, side by side in one run.

The transitions before the judgement run under TorchScript, and they are the run's dearest (the warm-up
starts far from the typical set, so their trees are long); a refit that loads the cached package runs them
too. Every fit runs in a process of its own with an empty package cache, then the refit in the same process
loads the package the first fit wrote. Inductor's own cache (its processor checks and precompiled headers,
about 20 s once per machine) is kept, as on any machine after its first compile; ``--cold`` empties it for
every fit. Programs: the horseshoe of the corpus (4 x (500 + 500)) and the catalogue's factor analysis as
`ppl demo` runs it (4 x (300 + 500)), the two that compile. A judgement set is written ``AT[:MARGIN],...``:
``30`` judges once at transition 30, ``10:4,30`` (the default, `inference.fast.AHEAD_OF_TIME_JUDGEMENTS`)
first at 10 asking a saving of 4 times the compile, then at 30.

    PYTHONPATH=. python benchmarks/aot_decision.py
    PYTHONPATH=. python benchmarks/aot_decision.py --programs horseshoe --judgements 50 30 10:4,30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PROGRAMS = {"horseshoe": dict(num_chains=4, num_warmup=500, num_samples=500),
            "factor_analysis": dict(num_chains=4, num_warmup=300, num_samples=500)}


def judgements(spec: str) -> tuple:
    """``"10:4,30"`` as `inference.fast.Judgement`s (a margin of 1 where none is written)."""
    from inference.fast import Judgement

    parts = [item.split(":") for item in spec.split(",")]
    return tuple(Judgement(at=int(p[0]), margin=float(p[1]) if len(p) > 1 else 1.0) for p in parts)


def worker(program: str, written: str, seed: int) -> dict:
    """The first fit and the refit of `program` under the judgements `written` (`run_fast_mcmc`, as `fit`
    calls it, the model's inspection included in the time)."""
    import arviz as az

    from inference.fast import run_fast_mcmc
    from inference.structure import inspect_model
    from ppl_models.data import plain_data
    from ppl_models.registry import resolve

    if program == "horseshoe":
        from benchmarks.corpus import PROGRAMS as CORPUS

        model = CORPUS[program].model
        data = plain_data(model, CORPUS[program].data(seed=0))
    else:
        spec, model, _ = resolve(program)
        data = spec.validate(spec.default_data(seed=0))
    out = {}
    for label in ("first fit", "refit"):
        start = time.perf_counter()
        structure = inspect_model(model, data)
        samples, _, notes = run_fast_mcmc(model, data, structure, method="nuts", seed=seed, progress=False,
                                          judgements=judgements(written), adaptation="pooled", **PROGRAMS[program])
        seconds = time.perf_counter() - start
        ess = az.ess(az.convert_to_dataset({k: v for k, v in samples.items() if v.dtype.kind == "f"}))
        note = next((n for n in notes if n.startswith("fast backend")), "")
        out[label] = {"seconds": seconds, "ess": float(min(float(ess[k].min()) for k in ess.data_vars)),
                      "compiled": "AOTInductor" in note,
                      "from": note.split("from transition ")[1].split(",")[0] if "from transition" in note else "-"}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", nargs="*", default=list(PROGRAMS), choices=list(PROGRAMS))
    parser.add_argument("--judgements", nargs="*", default=["30", "10:4,30"],
                        help="judgement sets AT[:MARGIN],...; the first is the baseline of the ratio column")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="empty Inductor's cache for every fit too")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return
    print("| program | judgements | fit | wall s | x baseline's time | min bulk ESS | AOTInductor from |")
    print("|---|---|---|---|---|---|---|")
    for program in args.programs:
        baseline = {}
        for spec in args.judgements:
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as inductor:
                env = dict(os.environ, PPL_CACHE_DIR=cache)
                if args.cold:
                    env["TORCHINDUCTOR_CACHE_DIR"] = inductor
                done = subprocess.run([sys.executable, __file__, "--worker", program, spec, str(args.seed)],
                                      env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {program} | {spec} | failed: {done.stderr.strip().splitlines()[-1:]} |")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for label, r in result.items():
                baseline.setdefault(label, r["seconds"])
                print(f"| {program} | {spec} | {label} | {r['seconds']:.1f} | {r['seconds'] / baseline[label]:.2f} "
                      f"| {r['ess']:.0f} | {r['from'] if r['compiled'] else 'not compiled'} |", flush=True)


if __name__ == "__main__":
    main()
