"""Big data: where the time of a large linear regression goes outside sampling, with and without the
pointwise groups (issue 19, defect 10). Prints a table (not a test).

    PYTHONPATH=. python benchmarks/big_data.py                        # N = 1e4, 1e5
    PYTHONPATH=. python benchmarks/big_data.py --max-rows 1e6         # N = 1e4, 1e5, 1e6
    PYTHONPATH=. python benchmarks/big_data.py --rows 2e5 --baseline-src /tmp/base

Per N, `linear_regression` on seeded synthetic data (X of shape (N, 3)), NUTS with 2 chains x (200 + 200)
by default, seed 0, run three ways, each in its own process (so that each peak memory is its own):

- ``baseline``: the behaviour before the `pointwise` setting, the sequence `ppl fit` runs: `fit`,
  `to_arviz()` with every pointwise group, ``idata.to_netcdf`` (ArviZ's default zlib compression), then
  `summary()` and `report()`, which used to evaluate the pointwise log-likelihood again, once per summary
  (three times: the summary written, the report's, the problems'); emulated on the current code, or, with
  ``--baseline-src DIR``, the real thing: the same calls on the modules of an older checkout
  (``git worktree add DIR COMMIT``);
- ``pointwise=True``: every group, on the current code (`Posterior.to_netcdf`, compressed only when small);
- ``auto``: the default, off above `inference.posterior.POINTWISE_LIMIT` values.

Columns: sampling s (the whole `fit`), to_arviz s, to_netcdf s, summary s (summary + report), the
non-sampling time over the sampling time, the file's MB, the process's peak resident MB, and the
non-sampling time, file and peak of each row over its baseline's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("baseline", "pointwise=True", "auto")


def _data(rows: int):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(size=rows)
    return {"X": X, "y": y}


def worker(rows: int, config: str, chains: int, samples: int, warmup: int, path: str) -> dict:
    """One configuration in this process; returns its timings, file size and peak memory."""
    from inference import fit

    data = _data(rows)
    current = config != "baseline" or os.environ.get("BIG_DATA_BASELINE_SRC") is None
    options = {}
    if current:
        options["pointwise"] = {"baseline": True, "pointwise=True": True, "auto": "auto"}[config]
    t0 = time.perf_counter()
    post = fit("linear_regression", data, method="nuts", num_chains=chains, num_samples=samples,
               num_warmup=warmup, progress=False, **options)
    t1 = time.perf_counter()
    idata = post.to_arviz()
    t2 = time.perf_counter()
    if config == "baseline":
        idata.to_netcdf(path)  # ArviZ's default: zlib on every variable
    else:
        post.to_netcdf(path)
    t3 = time.perf_counter()
    if config == "baseline" and current:  # the old summary() converted with the log-likelihood, each call
        for _ in range(3):
            post._idata = None
            post.to_arviz(prior=False, predictive=False, pointwise=True)
    post.summary()
    post.report()
    t4 = time.perf_counter()
    groups = sorted(idata.groups())
    return {"sampling": t1 - t0, "to_arviz": t2 - t1, "to_netcdf": t3 - t2, "summary": t4 - t3,
            "file_mb": os.path.getsize(path) / 1e6, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pointwise": "log_likelihood" in groups}


def _run(rows: int, config: str, args: argparse.Namespace, tmp: str) -> dict:
    env = dict(os.environ)
    src = args.baseline_src if config == "baseline" else None
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, root, env.get("PYTHONPATH")) if p)
    if src:
        env["BIG_DATA_BASELINE_SRC"] = src
    else:
        env.pop("BIG_DATA_BASELINE_SRC", None)
    path = os.path.join(tmp, f"{rows}-{config.replace('=', '_')}.nc")
    cmd = [sys.executable, __file__, "--worker", str(rows), config, str(args.chains), str(args.samples),
           str(args.warmup), path]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src or root)
    if out.returncode != 0:
        raise SystemExit(f"{config} at N={rows} failed:\n{out.stderr[-2000:]}")
    os.remove(path)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=float, help="the N to run (default: powers of ten from 1e4 "
                        "up to --max-rows)")
    parser.add_argument("--max-rows", type=float, default=1e5)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--baseline-src", help="source tree of the old code for the baseline rows")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    args = parser.parse_args()
    rows = [int(r) for r in args.rows] if args.rows else [10 ** k for k in range(4, 10) if 10 ** k <= args.max_rows]
    print(f"linear_regression, X (N, 3), NUTS {args.chains} chains x ({args.warmup} + {args.samples}), seed 0"
          + (f"; baseline from {args.baseline_src}" if args.baseline_src else "; baseline emulated"))
    head = ("| N | run | pointwise groups | sampling s | to_arviz s | to_netcdf s | summary s | non-sampling / "
            "sampling | file MB | peak MB | non-sampling x baseline | file x baseline | peak x baseline |")
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in rows:
            results = {c: _run(n, c, args, tmp) for c in args.configs}
            base = results.get("baseline")
            for config, r in results.items():
                rest = r["to_arviz"] + r["to_netcdf"] + r["summary"]
                cells = [f"{n:.0e}", config, "yes" if r["pointwise"] else "no", f"{r['sampling']:.1f}",
                         f"{r['to_arviz']:.2f}", f"{r['to_netcdf']:.2f}", f"{r['summary']:.2f}",
                         f"{rest / r['sampling']:.2f}", f"{r['file_mb']:.1f}", f"{r['peak_mb']:.0f}"]
                if base is not None:
                    base_rest = base["to_arviz"] + base["to_netcdf"] + base["summary"]
                    cells += [f"{rest / base_rest:.3f}", f"{r['file_mb'] / base['file_mb']:.3f}",
                              f"{r['peak_mb'] / base['peak_mb']:.2f}"]
                else:
                    cells += ["", "", ""]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        import warnings

        warnings.filterwarnings("ignore")
        n, config, chains, samples, warmup, path = sys.argv[2:8]
        print(json.dumps(worker(int(n), config, int(chains), int(samples), int(warmup), path)))
    else:
        main()
