"""The `ppl` command: list models, fit one, draw one, or run the demo over all of them.

    ppl list
    ppl fit NAME [--method M] [--data FILE] [--out DIR] [--seed S] [--chains C] [--samples N]
                 [--warmup W] [--steps K] [--evidence VAR=STATE ...] [--quiet] [--json]
    ppl render NAME --out FILE [--query "x _|_ theta | z"]
    ppl demo [--out DIR] [--quiet]

Bad input (unknown model or method, a missing or misshaped field, NaN, wrong dtype, an unreadable file)
ends with exit status 2 and one line naming the problem; nothing is left half-written. A failure during
inference itself ends with exit status 1 and one line (set PPL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .io import UsageError, atomic_directory, read_data

EXIT_USAGE = 2
EXIT_FAILURE = 1

# which run-length flags apply to which methods, and the fit() option each one sets
_FLAGS = {
    "chains": ("num_chains", ("nuts", "hmc")),
    "samples": ("num_samples", ("nuts", "hmc", "svi")),
    "warmup": ("num_warmup", ("nuts", "hmc")),
    "steps": ("num_steps", ("svi", "map", "mle")),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ppl", description="Probabilistic models as Pyro programs: fit, diagnose, draw.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the registered models")

    f = sub.add_parser("fit", help="fit a model and write posterior.nc, summary.csv and model.svg")
    f.add_argument("name")
    f.add_argument("--method", help="nuts, hmc, svi, map or mle (default: the model's default engine)")
    f.add_argument("--data", help="data file (.json, .csv or .npz); default: the model's embedded data")
    f.add_argument("--out", help="run directory (default: runs/NAME-METHOD)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--chains", type=int)
    f.add_argument("--samples", type=int)
    f.add_argument("--warmup", type=int)
    f.add_argument("--steps", type=int)
    f.add_argument("--evidence", nargs="+", metavar="VAR=STATE", help="evidence for a Bayesian network")
    f.add_argument("--network", help="which Bayesian network: a built-in name (see docs/bayes_net.md) or a .bif file")
    f.add_argument("--quiet", action="store_true", help="no progress bars; print only the problems found")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    r = sub.add_parser("render", help="draw a model's plate diagram (.svg .png .pdf .dot .tex)")
    r.add_argument("name")
    r.add_argument("--out", required=True)
    r.add_argument("--query", help='a conditional-independence query, e.g. "x _|_ theta | z"')

    d = sub.add_parser("demo", help="fit every model on its default data and write an HTML report")
    d.add_argument("--out", default="demo-out")
    d.add_argument("--quiet", action="store_true")
    return p


def _spec(name: str):
    import ppl_models

    try:
        return ppl_models.get(name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _fit_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for flag, (option, methods) in _FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if method not in methods:
            raise UsageError(f"--{flag} does not apply to method {method}; it applies to {', '.join(methods)}")
        if value < (0 if flag == "warmup" else 1):
            raise UsageError(f"--{flag} must be {'non-negative' if flag == 'warmup' else 'positive'}, got {value}")
        options[option] = value
    return options


def _load_data(spec, args: argparse.Namespace) -> dict[str, Any]:
    data = read_data(args.data) if args.data else spec.default_data(seed=0)
    takes_evidence = "evidence" in {f.name for f in spec.fields}
    if (args.evidence or args.network) and not takes_evidence:
        flag = "--evidence" if args.evidence else "--network"
        raise UsageError(f"{flag} applies to Bayesian networks; model {spec.name!r} takes no evidence")
    if args.network:
        data = {**data, "network": args.network, "evidence": {}}
    if args.evidence:
        from ppl_models.bayes_net import parse_evidence

        network = data.get("network", spec.options["network"].default)
        data = {**data, "evidence": parse_evidence(args.evidence, network)}
    spec.validate(data)  # fail before anything is created
    return data


def write_run(spec, data: dict, method: str, seed: int, options: dict, out: Path, progress: bool):
    """Fit and write the run directory atomically; return (Posterior, summary DataFrame, files, notes)."""
    from inference import fit

    with atomic_directory(out) as tmp:
        post = fit(spec, data=data, method=method, seed=seed, progress=progress, **options)
        if getattr(spec, "relabel", None) is not None:
            relabel(post, spec)
        idata = post.to_arviz()
        idata.to_netcdf(str(tmp / "posterior.nc"))
        summary = post.summary(round_to="none")  # full precision in files; the printed table rounds
        summary.to_csv(tmp / "summary.csv")
        notes = _draw(spec, data, tmp / "model.svg")
        files = sorted(p.name for p in tmp.iterdir())
    return post, summary, files, notes


def relabel(post, spec) -> None:
    """Replace the draws by the model's canonical form of each (label switching: chains of a symmetric
    mixture settle in different labellings, factor loadings in different rotations, which R-hat would
    report as disagreement)."""
    post.samples = spec.relabel(post.samples)
    post._idata = None
    post.notes.append(f"draws relabelled with {spec.name}'s {spec.relabel.__name__}(): the posterior does not "
                      "change under relabelling (or rotation) of its components, so chains may settle in "
                      "different ones; each draw is put in one canonical form")


def _draw(spec, data: dict, path: Path) -> list[str]:
    """Write the plate diagram; when Graphviz is missing, the DOT source is written instead."""
    import plates

    graph = plates.graph(spec, data)
    result = graph.render(path)
    written = Path(result) if isinstance(result, (str, os.PathLike)) else path
    return [] if written.suffix == path.suffix else [f"Graphviz 'dot' not found: wrote {written.name} instead of {path.name}"]


def cmd_list(args: argparse.Namespace) -> int:
    import ppl_models

    rows = [(n, ", ".join(ppl_models.get(n).engines), ppl_models.get(n).description) for n in ppl_models.names()]
    width = max(len(r[0]) for r in rows)
    ewidth = max(len(r[1]) for r in rows)
    print(f"{'model':<{width}}  {'engines (default first)':<{ewidth}}  description")
    for name, engines, description in rows:
        print(f"{name:<{width}}  {engines:<{ewidth}}  {description}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from inference import METHODS

    spec = _spec(args.name)
    method = args.method or spec.default_method
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method not in spec.engines:
        raise UsageError(f"method {method!r} does not apply to model {spec.name!r}; it supports {', '.join(spec.engines)}")
    options = _fit_options(args, method)
    data = _load_data(spec, args)
    out = Path(args.out or f"runs/{spec.name}-{method}")
    progress = not (args.quiet or args.json)
    post, summary, files, notes = write_run(spec, data, method, args.seed, options, out, progress)
    problems = post.problems()
    if args.json:
        table = json.loads(summary.to_json(orient="index"))
        print(json.dumps({"model": spec.name, "method": method, "seed": args.seed, "out": str(out),
                          "files": files, "summary": table, "problems": problems,
                          "notes": post.notes + notes}, indent=2))
    elif args.quiet:
        for line in problems:
            print(f"WARNING: {line}")
    else:
        print(post.report())
        for note in notes:
            print(f"note: {note}")
        print(f"\nwrote {out}/: {', '.join(files)}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import plates

    spec = _spec(args.name)
    out = Path(args.out)
    graph = plates.graph(spec, spec.default_data(seed=0))
    if args.query:
        xs, ys, zs = plates.parse_query(args.query)
        answer = graph.d_separated(xs, ys, zs)
        given = f" | {', '.join(zs)}" if zs else ""
        print(f"{', '.join(xs)} _|_ {', '.join(ys)}{given}: {'true' if answer else 'false'} "
              f"({'d-separated' if answer else 'd-connected'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.stem}.{os.getpid()}.tmp{out.suffix}"
    try:
        result = graph.render(tmp)
        written = Path(result) if isinstance(result, (str, os.PathLike)) else tmp
        final = out if written.suffix == out.suffix else out.with_suffix(written.suffix)
        os.replace(written, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    if final != out:
        print(f"Graphviz 'dot' not found: wrote the DOT source to {final} (install graphviz for {out.suffix})")
    else:
        print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    debug = bool(os.environ.get("PPL_DEBUG"))
    try:
        args = _parser().parse_args(argv)
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            return {"list": cmd_list, "fit": cmd_fit, "render": cmd_render, "demo": cmd_demo}[args.command](args)
    except KeyboardInterrupt:
        print("ppl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback (unless PPL_DEBUG is set)
        from inference import InputError
        from plates import PlateError
        from ppl_models import DataError

        if debug:
            raise
        if isinstance(exc, (UsageError, DataError, InputError, PlateError)):
            print(f"ppl: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"ppl: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
