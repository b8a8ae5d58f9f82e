"""AOTInductor's C++ kernels vectorised (Inductor's default) against scalar (``cpp.simdlen=1``, what
`inference.fast.AOT_INDUCTOR_CONFIGS` asks for): the compile's wall time and one call of the
compiled NUTS leaf step, on the leaf steps of corpus programs, side by side in one run.

A leaf step for 4 chains works on tensors of a few chains times a few dimensions: too short for vector
loops, while Inductor writes (and the C++ compiler compiles) each fused kernel twice, vectorised with a
scalar tail. Per program, one process records the leaf step's graph as the fast backend hands it to its
compiler (`inference.fast.leaf_step_graph`); then each
configuration compiles it in a process of its own with an empty package cache (Inductor's own cache of
its CPU checks and precompiled headers is warm, as on any machine after its first compile). Columns: the
compile (``torch.export`` and ``aoti_compile_and_package``), the median call of the loaded package on the
recorded example (``loader.run``, one thread, 7 x 300 calls), and the largest difference from the graph
run eagerly.

    PYTHONPATH=. python benchmarks/aot_configs.py
    PYTHONPATH=. python benchmarks/aot_configs.py --programs horseshoe --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {"vectorised (Inductor's default)": {}, "scalar (cpp.simdlen=1)": {"cpp.simdlen": 1}}


def record(program: str, path: str) -> int:
    """Save the leaf-step graph of `program` and its example inputs to `path`; returns its operations."""
    import torch

    from benchmarks.corpus import PROGRAMS as CORPUS
    from inference.fast import leaf_step_graph
    from inference.structure import inspect_model
    from ppl_models.data import plain_data

    model = CORPUS[program].model
    data = plain_data(model, CORPUS[program].data(seed=0))
    graph, example = leaf_step_graph(model, data, inspect_model(model, data))
    torch.save({"graph": graph, "example": example}, path)
    return sum(node.op == "call_function" for node in graph.graph.nodes)


def measure(path: str, config: str) -> dict:
    """Compile the recorded graph at `path` with `config` (a name of `CONFIGS`) and time it."""
    import torch

    from inference.fast import compile_graph

    torch.set_num_threads(1)
    saved = torch.load(path, weights_only=False)
    graph, example = saved["graph"], tuple(t.contiguous() for t in saved["example"])
    graph.recompile()
    want = graph(*example)
    start = time.perf_counter()
    compiled = compile_graph(graph, example, "inductor", inductor_configs=CONFIGS[config])
    seconds = time.perf_counter() - start
    got = compiled(*example)
    error = max(float((a.double() - b.double()).abs().max()) for a, b in zip(got, want) if a.is_floating_point())
    flat = list(example)
    for _ in range(50):
        compiled.loader.run(flat)
    calls = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(300):
            compiled.loader.run(flat)
        calls.append((time.perf_counter() - t) / 300 * 1e6)
    return {"compile_s": seconds, "call_us": statistics.median(calls), "error": error}


def child(*args: str) -> dict:
    """`main`'s `--child` in a process of its own, with an empty package cache removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ppl-aot-configs-") as cache:
        out = subprocess.run([sys.executable, __file__, "--child", *args], env=dict(os.environ, PPL_CACHE_DIR=cache),
                             capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{args[0]}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", nargs="+", default=["horseshoe", "gmm", "hmm"])
    parser.add_argument("--repeats", type=int, default=1, help="compiles per configuration (alternating)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = {"operations": record(*rest)} if kind == "record" else measure(*rest)
        print(json.dumps(result))
        return
    print("| program | leaf ops | kernels | compile s | call us | call x vectorised | compile x vectorised "
          "| max difference from eager |")
    print("|---|---|---|---|---|---|---|---|")
    for program in args.programs:
        runs = {config: [] for config in CONFIGS}
        with tempfile.TemporaryDirectory(prefix="ppl-aot-graph-") as folder:
            path = os.path.join(folder, f"{program}.pt")
            operations = child("record", program, path)["operations"]
            for _ in range(args.repeats):
                for config in CONFIGS:
                    runs[config].append(child("measure", path, config))
        base = {k: statistics.median(r[k] for r in runs[next(iter(CONFIGS))]) for k in ("compile_s", "call_us")}
        for config, results in runs.items():
            compile_s = statistics.median(r["compile_s"] for r in results)
            call_us = statistics.median(r["call_us"] for r in results)
            print(f"| {program} | {operations} | {config} | {compile_s:.1f} | {call_us:.1f} | "
                  f"{call_us / base['call_us']:.2f} | {compile_s / base['compile_s']:.2f} | "
                  f"{max(r['error'] for r in results):.1e} |", flush=True)


if __name__ == "__main__":
    main()
