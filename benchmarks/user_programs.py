"""NUTS on programs as users write them: the suite's `fit` against stock Pyro NUTS and NumPyro NUTS.

The programs are the corpus of `benchmarks/corpus` (Pyro's examples and tutorials as written: baseball,
eight schools centred and non-centred, PyroModule[nn.Linear], X @ b, a[g], LKJ, horseshoe,
pyro.deterministic, enumerated mixtures and HMMs); their NumPyro versions, with the same priors on the
same data, are in `benchmarks/numpyro_ports.py`. Per program, in one process, with the same seed and the
same budget (chains, warm-up, draws):

- the suite: ``fit(program.model, data, method="nuts")``, its defaults; the path it took is the backend note
  of ``post.notes`` (the fast backend, or the fallback to Pyro's kernels and why);
- stock Pyro: ``fit(..., backend="pyro")``, which runs Pyro's own ``MCMC(NUTS(model))`` with Pyro's
  defaults (diagonal mass matrix, step size and metric adapted), one chain after another; capped at
  ``--pyro-timeout`` seconds (a cut run is reported as "> T");
- NumPyro NUTS with a diagonal and with a dense mass matrix, ``chain_method="sequential"``, its JIT
  compilation included in the wall time (when NumPyro is installed: ``pip install -e '.[bench]'``; the
  enumerated programs need ``funsor`` as well).

Columns: wall time (everything the user waits for), the smallest bulk ESS over the program's continuous
latent parameters (every scalar of every site; components fixed by the support, like the first row of an
LKJ Cholesky factor, left out; deterministic and enumerated sites are not parameters), ESS per second,
that rate over stock Pyro's and over NumPyro's better sampler's, and accuracy: the largest
|mean - reference mean| / reference sd and the sd ratio furthest from 1. The reference is a longer NumPyro
dense run (``--reference-samples`` draws per chain after at least 1000 warm-up, seed + 1); the centred
eight schools take theirs from the reparametrised program (same priors and data, no funnel:
`numpyro_ports.REFERENCE_PORTS`); without NumPyro the reference is a longer run of the suite. The output
says which, per program. The Gaussian mixture and the HMM are symmetric under relabelling their
components or states: every sampler's draws are put in one labelling (components by location, states by
the probability of the first tone) before they are measured.

Each program runs in a process of its own with empty compile caches (the suite's packages compiled ahead
of time, and Inductor's), so the suite's first fit pays any compile in full, as a user's first fit of a
model does. ``--refit`` adds a row for the same fit again, when that package is cached.

``--compilers`` adds a second table: the suite's fast backend with each compiler of
`inference.fast.compile` (TorchScript, AOTInductor and plain Python, or those named) side by side.

    PYTHONPATH=. python benchmarks/user_programs.py --compilers       # every program, 4 x (500 + 500)
    PYTHONPATH=. python benchmarks/user_programs.py --programs baseball lkj --skip-pyro --chains 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.mcmc import _assess, _scalar_params  # (imports arviz with its warnings silenced)
from inference import fit

SUITE = "suite fit"
REFIT = "suite fit, again"
STOCK = "stock Pyro NUTS"
NUMPYRO = ("NumPyro NUTS (diag)", "NumPyro NUTS (dense)")


@dataclass
class Run:
    """One sampler on one program: its draws (site -> (chain, draw, ...)), wall seconds and path taken;
    ``draws`` is None when the run was cut or failed (``problem`` says why)."""

    sampler: str
    path: str
    seconds: float
    draws: dict[str, np.ndarray] | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)


class _TimeLimit(BaseException):
    """Raised by the alarm: a BaseException, so that no ``except Exception`` on the way swallows it."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise `_TimeLimit` in this (main) thread after `seconds`, and every second after that until the
    block ends (an exception raised inside a finaliser is dropped by Python: the next one gets through)."""
    if not seconds or seconds <= 0:
        yield
        return

    def alarm(signum, frame):
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def backend_note(notes: list[str]) -> str:
    """The note that says which path a suite run took (the fast backend's, or its fallback's)."""
    return next((n for n in notes if n.startswith("fast backend")), notes[0] if notes else "")


def short_path(notes: list[str]) -> str:
    """The path of a suite run in a few words, from its backend note (printed in full below the table)."""
    first = backend_note(notes)
    if first.startswith("fast backend:"):
        batching = first.split("(", 1)[1].split(")", 1)[0] if "(" in first else "?"
        metric = "dense" if "dense mass matrix" in first else "diag"
        compiled = ("AOTInductor" if "compiled ahead of time" in first else
                    "compiled" if "compiled" in first else "eager")
        return f"fast: {batching}, {compiled}, {metric}"
    if first.startswith("fast backend unavailable"):
        return "FALLBACK: Pyro's kernels"
    return first or "?"


def _error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else ''}"


# ---- the samplers ------------------------------------------------------------------------------------------
def run_suite(program, data: dict, budget: dict, seed: int, timeout: float | None, **options) -> tuple[Run, object]:
    """`fit(program.model, data, method="nuts")`: the run and the `Posterior` (None when cut)."""
    start = time.perf_counter()
    try:
        with time_limit(timeout):
            post = fit(program.model, data=data, method="nuts", seed=seed, progress=False, **budget, **options)
    except _TimeLimit:
        return Run(SUITE, "?", time.perf_counter() - start, problem=f"> {timeout:g}"), None
    except Exception as exc:  # a crash of the suite on a user's program is a result: it goes in the table
        return Run(SUITE, "ERROR", time.perf_counter() - start, problem=_error(exc)), None
    seconds = time.perf_counter() - start
    return Run(SUITE, short_path(post.notes), seconds, dict(post.samples), notes=list(post.notes)), post


def run_stock_pyro(program, data: dict, budget: dict, seed: int, timeout: float | None) -> Run:
    """Pyro's own NUTS kernel with Pyro's defaults, chains one after another, through ``backend="pyro"``."""
    start = time.perf_counter()
    try:
        with time_limit(timeout):
            post = fit(program.model, data=data, method="nuts", seed=seed, progress=False, backend="pyro",
                       **budget)
    except _TimeLimit:
        return Run(STOCK, "fit(backend='pyro')", time.perf_counter() - start, problem=f"> {timeout:g}")
    except Exception as exc:
        return Run(STOCK, "fit(backend='pyro')", time.perf_counter() - start, problem=_error(exc))
    return Run(STOCK, "fit(backend='pyro')", time.perf_counter() - start, dict(post.samples))


def run_numpyro(name: str, data: dict, chains: int, warmup: int, draws: int, seed: int, dense: bool) -> Run:
    """NumPyro's NUTS on the program's port; chains one after another; JIT compilation timed with the run."""
    import jax
    from numpyro.infer import MCMC, NUTS

    from benchmarks.numpyro_ports import PORTS, numpyro_data

    label = NUMPYRO[int(dense)]
    start = time.perf_counter()
    mcmc = MCMC(NUTS(PORTS[name], dense_mass=dense), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), **numpyro_data(data))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return Run(label, "numpyro", time.perf_counter() - start, samples)


def run_compiler(post, compiler: str, budget: dict, seed: int) -> Run:
    """The suite's fast backend with one compiler (`inference.fast.COMPILERS`), on the data and program
    `fit` prepared. Through `fit` where it takes a ``compiler`` option, else `run_fast_mcmc` directly
    (model inspection included in the time)."""
    from inference.options import OPTIONS

    label = f"suite, compiler={compiler}"
    start = time.perf_counter()
    try:
        if "compiler" in OPTIONS["nuts"]:
            post = fit(post.model, data=post.data, method="nuts", seed=seed, progress=False, compiler=compiler,
                       **budget)
            samples, notes = dict(post.samples), list(post.notes)
        else:
            from inference.fast import run_fast_mcmc
            from inference.structure import inspect_model

            structure = inspect_model(post.model, post.data)
            samples, _, notes = run_fast_mcmc(post.model, post.data, structure, method="nuts", seed=seed,
                                              progress=False, compiler=compiler, **budget)
    except Exception as exc:
        return Run(label, "ERROR", time.perf_counter() - start, problem=_error(exc))
    return Run(label, short_path(notes), time.perf_counter() - start, samples, notes=notes)


# ---- measuring -------------------------------------------------------------------------------------------------
def reference_of(draws: dict[str, np.ndarray], sites: list[str]) -> dict[str, tuple[float, float]]:
    """(mean, sd) of every scalar of the continuous sites `sites`; components that do not move (sd 0: the
    fixed entries of a Cholesky factor) left out."""
    params = _scalar_params({k: v for k, v in draws.items() if k in sites})
    out = {}
    for name, v in params.items():
        if name.split("[", 1)[0] not in sites:  # (the eight-schools theta that _scalar_params derives)
            continue
        sd = float(v.std())
        if sd > 1e-6 * max(1.0, abs(float(v.mean()))):
            out[name] = (float(v.mean()), sd)
    return out


def measure(run: Run, reference: dict[str, tuple[float, float]], sites: list[str], program: str) -> dict | None:
    """`benchmarks.mcmc._assess` of a run's draws of `sites` (identified as `identified` does): wall time,
    min bulk ESS, ESS/s, max |mean - ref mean| / ref sd, the sd ratio furthest from 1."""
    if run.draws is None or not reference:
        return None
    draws = {k: v for k, v in identified(program, run.draws).items() if k in sites}
    return _assess(draws, reference, run.seconds)


def _order_mixture(draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The GMM tutorial's components ordered by location in every draw (weights permuted alike)."""
    order = np.argsort(draws["locs"], axis=-1)
    return {**draws, "locs": np.take_along_axis(draws["locs"], order, -1),
            "weights": np.take_along_axis(draws["weights"], order, -1)}


def _order_states(draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The HMM's hidden states ordered by their probability of the first tone in every draw (the rows of
    probs_y, the rows and columns of probs_x permuted alike)."""
    order = np.argsort(draws["probs_y"][..., 0], axis=-1)
    probs_x = np.take_along_axis(draws["probs_x"], order[..., :, None], -2)
    probs_x = np.take_along_axis(probs_x, order[..., None, :], -1)
    return {**draws, "probs_x": probs_x, "probs_y": np.take_along_axis(draws["probs_y"], order[..., None], -2)}


# programs whose posterior is symmetric under relabelling (components, hidden states): every sampler's draws
# are put in one labelling before they are measured, else a chain in the other mode reads as an error
IDENTIFY = {"gmm": _order_mixture, "hmm": _order_states}


def identified(program: str, draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`draws` in one labelling where `IDENTIFY` has the program, else as they are."""
    fix = IDENTIFY.get(program)
    return fix(draws) if fix is not None else draws


# ---- the tables --------------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def bench_program(program, args, have_numpyro: bool) -> dict:
    """Every sampler on one program; returns its table rows, its compiler rows and what to say below."""
    budget = dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples)
    data = program.data(args.data_seed)
    suite, post = run_suite(program, data, budget, args.seed, args.pyro_timeout)
    runs = [suite]
    if args.refit and post is not None:  # the same fit again: what compiled ahead of time is now cached
        again, _ = run_suite(program, data, budget, args.seed, args.pyro_timeout)
        runs.append(dataclasses.replace(again, sampler=REFIT))
    compilers = []
    if args.compilers is not None and post is not None:
        compilers = [run_compiler(post, c, budget, args.seed)
                     for c in (args.compilers or ("torchscript", "inductor", "python"))]
    if not args.skip_pyro:
        runs.append(run_stock_pyro(program, data, budget, args.seed, args.pyro_timeout))
    ported = have_numpyro and _has_port(program.name)
    if ported:
        for dense in (False, True):
            try:
                runs.append(run_numpyro(program.name, data, args.chains, args.warmup, args.samples, args.seed, dense))
            except Exception as exc:  # a port NumPyro cannot run: say so below the table
                runs.append(Run(NUMPYRO[int(dense)], "numpyro", float("nan"), problem=_error(exc)))

    sites = continuous_sites(program, data, post)
    reference, ref_label = {}, "-"
    long = max(args.reference_samples, args.samples)
    ref_budget = dict(budget, num_warmup=max(args.warmup, 1000), num_samples=long)
    if ported:
        port = reference_port(program.name)
        try:
            ref = run_numpyro(port, data, args.chains, ref_budget["num_warmup"], long, args.seed + 1, True)
            reference = reference_of(identified(program.name, ref.draws), sites)
            ref_label = f"NumPyro dense {args.chains} x {long}" + (f" ({port})" if port != program.name else "")
        except Exception as exc:
            print(f"[{program.name}] the NumPyro reference failed: {_error(exc)}", file=sys.stderr)
    if not reference and post is not None:
        ref, _ = run_suite(program, data, ref_budget, args.seed + 1, None)
        if ref.draws is not None:
            reference = reference_of(identified(program.name, ref.draws), sites)
            ref_label = f"suite {args.chains} x {long}"

    measured = [(r, measure(r, reference, sites, program.name)) for r in runs]
    stock = next((m for r, m in measured if r.sampler == STOCK and m is not None), None)
    best_np = max((m["ess_s"] for r, m in measured if r.sampler in NUMPYRO and m is not None), default=None)
    rows, problems = [], []
    for r, m in measured:
        if r.problem:
            problems.append(f"{program.name}, {r.sampler}: {r.problem}")
        wall = (r.problem if r.problem.startswith(">") else "error") if r.draws is None else _fmt(r.seconds)
        rows.append({"program": program.name, "sampler": r.sampler, "path": r.path, "wall": wall,
                     "ess": _fmt(m["ess"], 0) if m else "-", "ess_s": _fmt(m["ess_s"]) if m else "-",
                     "x_stock": _fmt(m["ess_s"] / stock["ess_s"]) if m and stock else "-",
                     "x_numpyro": _fmt(m["ess_s"] / best_np, 2) if m and best_np else "-",
                     "err": _fmt(m["err"], 3) if m else "-", "sd": _fmt(m["sd_ratio"], 3) if m else "-"})
    comp_rows = []
    for r in compilers:
        m = measure(r, reference, sites, program.name)
        if r.problem:
            problems.append(f"{program.name}, {r.sampler}: {r.problem}")
        comp_rows.append({"program": program.name, "compiler": r.sampler.split("=", 1)[1], "path": r.path,
                          "wall": _fmt(r.seconds) if r.draws is not None else "error",
                          "ess": _fmt(m["ess"], 0) if m else "-", "ess_s": _fmt(m["ess_s"]) if m else "-",
                          "err": _fmt(m["err"], 3) if m else "-"})
    return {"rows": rows, "compilers": comp_rows, "note": backend_note(suite.notes) or suite.problem,
            "params": len(reference), "problems": problems,
            "reference": ref_label}


def continuous_sites(program, data: dict, post) -> list[str]:
    """The program's continuous latent sites (the parameters measured): from the suite's run, or, when that
    failed, from inspecting the program as `fit` does."""
    if post is not None:
        return list(post.structure.continuous)
    from inference.structure import inspect_model
    from ppl_models.data import plain_data

    return list(inspect_model(program.model, plain_data(program.model, data)).continuous)


def reference_port(name: str) -> str:
    from benchmarks.numpyro_ports import REFERENCE_PORTS

    return REFERENCE_PORTS.get(name, name)


def _has_port(name: str) -> bool:
    try:
        from benchmarks.numpyro_ports import PORTS
    except ImportError:
        return False
    return name in PORTS


COLUMNS = ("program", "sampler", "path", "wall", "ess", "ess_s", "x_stock", "x_numpyro", "err", "sd")
HEADER = ("program", "sampler", "path", "wall s", "min bulk ESS", "ESS/s", "x stock Pyro", "x best NumPyro",
          "max abs(mean-ref)/ref sd", "sd ratio")
COMP_COLUMNS = ("program", "compiler", "path", "wall", "ess", "ess_s", "err")
COMP_HEADER = ("program", "compiler", "path", "wall s", "min bulk ESS", "ESS/s", "max abs(mean-ref)/ref sd")


def _print_row(row: dict, columns: tuple[str, ...]) -> None:
    print("| " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)


def main(argv=None) -> None:
    from benchmarks.corpus import PROGRAMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", nargs="*", default=None, help=f"names among: {', '.join(PROGRAMS)}")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="the samplers' seed (the reference uses seed + 1)")
    parser.add_argument("--data-seed", type=int, default=0, help="the seed of program.data")
    parser.add_argument("--skip-pyro", action="store_true", help="leave stock Pyro out (minutes per program)")
    parser.add_argument("--pyro-timeout", type=float, default=600.0,
                        help="seconds after which a Pyro-kernel run (stock, or the suite's fallback) is cut")
    parser.add_argument("--no-numpyro", action="store_true")
    parser.add_argument("--reference-samples", type=int, default=5000, help="draws per chain of the reference run")
    parser.add_argument("--compilers", nargs="*", default=None, choices=("torchscript", "inductor", "python"),
                        help="also run the fast backend with each compiler named (none named: all three)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every program in this process (by default each runs in a process of its own, "
                             "so that one that crashes or exhausts memory leaves the others' results)")
    parser.add_argument("--refit", action="store_true",
                        help="fit each program a second time with the suite: a package compiled ahead of time "
                             "by the first fit is then loaded from the cache")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [p for p in args.programs or () if p not in PROGRAMS]
    if unknown:
        parser.error(f"unknown programs {unknown}; known: {', '.join(PROGRAMS)}")
    names = args.programs or list(PROGRAMS)
    have_numpyro = False
    if not args.no_numpyro:
        try:
            import numpyro  # noqa: F401

            have_numpyro = True
        except ImportError:
            pass
    if args.worker:  # one program, its result as one JSON line for the parent
        print(RESULT + json.dumps(bench_program(PROGRAMS[names[0]], args, have_numpyro)), flush=True)
        return
    import torch

    print(f"budget: {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), seed {args.seed}, "
          f"data seed {args.data_seed}; torch {torch.__version__}; numpyro "
          f"{'yes' if have_numpyro else 'not used'}; stock Pyro {'skipped' if args.skip_pyro else 'run'}")
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    results = []
    for name in names:
        result = bench_program(PROGRAMS[name], args, have_numpyro) if args.in_process else _in_worker(name, argv)
        results.append(result)
        for row in result["rows"]:
            _print_row(row, COLUMNS)
    print()
    print("Per program: the scalar parameters measured, the reference, and the path the suite took (its backend "
          "note in post.notes):")
    for name, result in zip(names, results):
        print(f"- {name} ({result['params']} parameters; reference: {result['reference']}): {result['note']}")
    problems = [p for result in results for p in result["problems"]]
    if problems:
        print()
        print("Runs that were cut or failed:")
        for p in problems:
            print(f"- {p}")
    if args.compilers is not None:
        print()
        print("| " + " | ".join(COMP_HEADER) + " |")
        print("|" + "---|" * len(COMP_HEADER))
        for result in results:
            for row in result["compilers"]:
                _print_row(row, COMP_COLUMNS)


RESULT = "RESULT "


def _in_worker(name: str, argv: list[str] | None) -> dict:
    """`bench_program` on one program in a child process (this script with ``--worker``); its stderr passes
    through. A child that dies gives one row saying so."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--programs" in argv:  # drop the parent's list: the child gets its one program
        i = argv.index("--programs")
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        argv = argv[:i] + argv[j:]
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="ppl-bench-cache-") as caches:
        # empty compile caches (the suite's packages, Inductor's own): each program's first fit pays its
        # compile in full, as a user's first fit of a model does
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               "PPL_CACHE_DIR": os.path.join(caches, "ppl"), "TORCHINDUCTOR_CACHE_DIR": os.path.join(caches, "inductor")}
        child = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--worker", "--programs", name],
                               stdout=subprocess.PIPE, text=True, env=env)
    for line in child.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    problem = f"{name}: its process ended with exit code {child.returncode} before a result (its stderr says why)"
    row = {c: "-" for c in COLUMNS} | {"program": name, "sampler": "(all)", "path": "process died", "wall": "error"}
    return {"rows": [row], "compilers": [], "note": "-", "params": 0, "problems": [problem], "reference": "-"}


if __name__ == "__main__":
    main()
