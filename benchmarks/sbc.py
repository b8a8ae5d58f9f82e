"""SBC throughput: replicates per minute of the coin by NUTS, by executor and worker count.

    .venv/bin/python benchmarks/sbc.py [--replicates 24] [--samples 300] [--warmup 200]

Each row runs the same replicates (same seed, so the same fits) with one executor: serial (in this
process), local worker processes (1 and 2), Ray (2 CPUs, when installed). The wall time includes starting
the workers (a spawned process imports torch and Pyro: a few seconds) and Ray itself; the ratio is against
serial. The ranks are checked to be identical across executors.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings


def main() -> None:
    warnings.simplefilter("ignore")
    from inference import sbc

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=24)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args()
    options = {"num_chains": 1, "num_samples": args.samples, "num_warmup": args.warmup}
    rows = [("serial", 1), ("local", 1), ("local", 2)]
    try:
        import ray  # noqa: F401

        rows.append(("ray", 2))
    except ImportError:
        print("ray not installed: its row is left out (pip install 'ppl-suite[ray]')")
    print(f"coin by NUTS, {args.replicates} replicates, one chain of {args.warmup} + {args.samples} draws; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"{'executor':<10} {'workers':>7} {'seconds':>8} {'replicates/min':>15} {'vs serial':>10}  ranks")
    base, reference = None, None
    for executor, workers in rows:
        start = time.perf_counter()
        result = sbc("coin", method="nuts", replicates=args.replicates, seed=0, executor=executor, workers=workers,
                     progress=False, **options)
        seconds = time.perf_counter() - start
        rate = 60 * len(result.ok) / seconds
        base = base or rate
        same = "reference" if reference is None else ("same" if result.ranks.equals(reference) else "DIFFER")
        reference = result.ranks if reference is None else reference
        print(f"{executor:<10} {workers:>7} {seconds:>8.1f} {rate:>15.1f} {rate / base:>9.2f}x  {same}", flush=True)


if __name__ == "__main__":
    main()
