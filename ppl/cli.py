"""The `ppl` command: list models, fit one, draw one, or run the demo over all of them.

    ppl list [NAME]
    ppl fit NAME [--method M] [--data FILE] [--set OPTION=VALUE ...] [--out DIR] [--seed S]
                 [--chains C] [--samples N] [--warmup W] [--steps K] [--pointwise auto|yes|no]
                 [--evidence VAR=STATE ...] [--network NAME|FILE.bif] [--all-sites] [--quiet] [--json]
    ppl compare NAME [--methods M ...] [--data FILE] [--set OPTION=VALUE ...] [--seed S] [--out DIR]
                 [--evidence VAR=STATE ...] [--network NAME|FILE.bif] [--quiet] [--json]
    ppl render NAME --out FILE [--data FILE] [--set OPTION=VALUE ...] [--query "x _|_ theta | z"]
    ppl demo [--out DIR] [--quiet]
    ppl sbc NAME [--method M] [--replicates R] [--out DIR] [--executor local|ray|serial] [--workers W]
                 [--address ADDR] [--seed S] [--data FILE] [--set OPTION=VALUE ...] [--chains C] [--samples N]
                 [--warmup W] [--steps K] [--quiet] [--json]

`ppl` alone prints this list of commands; `ppl COMMAND --help` each command's flags and defaults.

Bad input (unknown model or method, a missing or misshaped field, NaN, wrong dtype, an unreadable file,
an --out that is not the suite's to replace) ends with exit status 2 and one line naming the problem;
nothing is left half-written. A failure during inference itself ends with exit status 1 and one line (set
PPL_DEBUG=1 for the traceback). SIGINT and SIGTERM stop the run and remove its temporaries (exit 130 and
143); `--out` is replaced only by a complete run (see `ppl.rundir`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import interrupts
from .io import UsageError, read_data
from .rundir import OutError, run_directory
from .runs import write_run

EXIT_USAGE = 2
EXIT_FAILURE = 1

# which run-length flags apply to which methods, and the fit() option each one sets
_FLAGS = {
    "chains": ("num_chains", ("nuts", "hmc")),
    "samples": ("num_samples", ("nuts", "hmc", "svi")),
    "warmup": ("num_warmup", ("nuts", "hmc")),
    "steps": ("num_steps", ("svi", "map", "mle")),
}
_FLAG_OF = {option: f"--{flag}" for flag, (option, _) in _FLAGS.items()} | {"seed": "--seed"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    from inference.posterior import POINTWISE_LIMIT

    p = _Parser(prog="ppl", description="Probabilistic models as Pyro programs: fit, diagnose, draw.",
                epilog="ppl COMMAND --help shows a command's flags and their defaults.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    ls = sub.add_parser("list", help="list the registered models; with NAME, that model's data fields and options")
    ls.add_argument("name", nargs="?", help="a model: show its data fields and options")

    f = sub.add_parser("fit", help="fit a model and write posterior.nc, summary.csv and model.svg")
    f.add_argument("name")
    f.add_argument("--method", help="nuts, hmc, svi, map or mle (default: the model's default engine)")
    f.add_argument("--data", help="data file (.json, .csv or .npz); default: the model's embedded data")
    _add_set(f)
    f.add_argument("--out", help="run directory (default: runs/NAME-METHOD)")
    f.add_argument("--seed", type=int, default=0, help="every random choice follows from it: the same seed "
                                                        "gives the same draws (default 0)")
    for flag, (option, methods) in _FLAGS.items():
        f.add_argument(f"--{flag}", type=int, help=_flag_help(option, methods))
    f.add_argument("--pointwise", choices=("auto", "yes", "no"), default="auto",
                   help="write the per-observation log-likelihood and predictive groups (needed by az.loo); "
                        f"auto: only when draws x observations is at most {POINTWISE_LIMIT:,}")
    f.add_argument("--evidence", nargs="+", metavar="VAR=STATE", help="evidence for a Bayesian network")
    f.add_argument("--network", help="which Bayesian network: a built-in name (see docs/bayes_net.md) or a .bif file")
    f.add_argument("--all-sites", action="store_true",
                   help="print every site's rows, local latents (one per data point, e.g. a VAE's z) included; "
                        "by default they are left out of the printed table (summary.csv has them all)")
    f.add_argument("--quiet", action="store_true",
                   help="no progress bars or tables; print the problems found and where the run was written")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    c = sub.add_parser("compare", help="fit a model by several methods and compare them side by side "
                                       "(means, sds, elpd LOO, Pareto k, time, problems)")
    c.add_argument("name")
    c.add_argument("--methods", nargs="+", metavar="M",
                   help="methods to compare (default: those of nuts, svi and map the model supports)")
    c.add_argument("--data", help="data file (.json, .csv or .npz); default: the model's embedded data")
    _add_set(c)
    c.add_argument("--seed", type=int, default=0, help="every random choice follows from it (default 0)")
    c.add_argument("--out", help="also write the comparison into this new directory: methods.csv, "
                                 "parameters.csv, report.txt and each method's METHOD.nc (default: print only)")
    c.add_argument("--evidence", nargs="+", metavar="VAR=STATE", help="evidence for a Bayesian network")
    c.add_argument("--network", help="which Bayesian network: a built-in name or a .bif file")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    r = sub.add_parser("render", help="draw a model's plate diagram (.svg .png .pdf .dot .tex)")
    r.add_argument("name")
    r.add_argument("--out", required=True, help="the diagram's file; its suffix picks the format")
    r.add_argument("--data", help="data file (.json, .csv or .npz); default: the model's embedded data")
    _add_set(r)
    r.add_argument("--query", help='a conditional-independence query, e.g. "x _|_ theta | z"')

    d = sub.add_parser("demo", help="fit every model on its default data and write an HTML report")
    d.add_argument("--out", default="demo-out", help="the report's directory (default: demo-out)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    _add_sbc(sub)  # ppl sbc: simulation-based calibration (ppl.sbc_run)
    return p


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", nargs="+", action="extend", metavar="OPTION=VALUE", dest="set",
                        help="a model option (ppl list NAME shows them and their defaults), e.g. --set K=3 "
                             "prior=laplace; values are read as JSON where they parse (numbers, true, false), "
                             "else as text")


def _flag_help(option: str, methods: tuple[str, ...]) -> str:
    """A run-length flag's help, written from the engine option's declaration (`inference.options`)."""
    from inference.options import BY_NAME

    declared = BY_NAME[option]
    defaults = {m: declared.defaults[m] for m in methods if m in declared.defaults}
    if len(set(defaults.values())) == 1:
        shown = str(next(iter(defaults.values())))
    else:
        shown = ", ".join(f"{m} {'auto' if v is None else v}" for m, v in defaults.items())
    return f"{declared.help} ({'/'.join(methods)}; default: {shown})"


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
            raise UsageError(f"--{flag}: does not apply to method {method}; it applies to {', '.join(methods)}")
        if value < (0 if flag == "warmup" else 1):
            raise UsageError(f"--{flag}: must be {'non-negative' if flag == 'warmup' else 'positive'}, got {value}")
        options[option] = value
    return options


def _model_options(spec, items: Sequence[str] | None) -> dict[str, Any]:
    """``--set OPTION=VALUE ...`` as a dict of model options; values are checked by `spec.validate` later."""
    options: dict[str, Any] = {}
    fields = {f.name for f in spec.fields}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--set: write OPTION=VALUE, got {item!r}")
        if name in fields:
            raise UsageError(f"--set: {name!r} is a data field of model {spec.name!r}, not an option; "
                             "give data with --data FILE")
        if name not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise UsageError(f"--set: model {spec.name!r} has no option {name!r}; its options: {known}")
        try:
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text
    return options


def _load_data(spec, args: argparse.Namespace) -> dict[str, Any]:
    from ppl_models.errors import InputError

    data = read_data(args.data) if getattr(args, "data", None) else spec.default_data(seed=0)
    chosen = _model_options(spec, getattr(args, "set", None))
    data = {**data, **chosen}
    try:
        return _with_evidence(spec, data, args)
    except InputError as exc:
        if exc.field in chosen:
            raise UsageError(f"--set {exc.field}: {exc.problem}") from None
        raise


def _with_evidence(spec, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if not hasattr(args, "evidence"):
        spec.validate(data)
        return data
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


def cmd_list(args: argparse.Namespace) -> int:
    import ppl_models

    if args.name is not None:
        print(describe_model(_spec(args.name)))
        return 0
    specs = [ppl_models.get(n) for n in ppl_models.names()]
    rows = [(s.name, ", ".join(s.engines), ", ".join(f.name for f in s.fields), s.description) for s in specs]
    heads = ("model", "engines (default first)", "data")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print("  ".join(f"{h:<{w}}" for h, w in zip(heads, widths)) + "  description")
    for row in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(row, widths)) + f"  {row[-1]}")
    print("\nppl list NAME: a model's data fields and options")
    return 0


def describe_model(spec) -> str:
    """A model's data fields (kind, shape, meaning) and options (type, default, allowed values), for
    `ppl list NAME`: what a data file holds and what ``--set`` takes."""
    lines = [f"{spec.name}: {spec.description}", f"engines: {', '.join(spec.engines)} (default {spec.default_method})",
             "", "data fields (--data FILE: .json, .csv or .npz):"]
    width = max((len(f.name) for f in spec.fields), default=0)
    for f in spec.fields:
        shape = " or ".join("(" + ", ".join(d) + ")" for d in f.dims) or "any shape"
        need = "" if f.required else ", optional"
        lines.append(f"  {f.name:<{width}}  {f.kind} {shape}{need}: {f.doc}")
    lines += ["", "options (--set OPTION=VALUE):"]
    width = max((len(n) for n in spec.options), default=0)
    for name, option in spec.options.items():
        default = "unset" if option.default is None else json.dumps(option.default) \
            if isinstance(option.default, (bool, int, float, str)) else repr(option.default)
        allowed = f"; one of {', '.join(map(str, option.choices))}" if option.choices else ""
        bounds = "".join(f"; {w} {b:g}" for w, b in (("at least", option.low), ("at most", option.high)) if b is not None)
        lines.append(f"  {name:<{width}}  {option.type_name}, default {default}{allowed}{bounds}: {option.doc}")
    if not spec.options:
        lines.append("  (none)")
    return "\n".join(lines)


def _method(spec, method: str | None, flag: str = "--method") -> str:
    """A method flag checked by `inference.options.check_method` (the one place that knows the methods)."""
    from inference.options import check_method
    from ppl_models.errors import InputError

    try:
        return check_method(method, spec)
    except InputError as exc:
        raise UsageError(f"{flag}: {exc.problem}") from None


def cmd_fit(args: argparse.Namespace) -> int:
    spec = _spec(args.name)
    method = _method(spec, args.method)
    options = _fit_options(args, method)
    options["pointwise"] = {"auto": "auto", "yes": True, "no": False}[args.pointwise]
    data = _load_data(spec, args)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: is empty; name a new directory for the run")
    out = Path(args.out or f"runs/{spec.name}-{method}")
    progress = not (args.quiet or args.json)
    provenance = {"data": str(Path(args.data).resolve()) if args.data else "the model's embedded default data",
                  "model_options": _model_options(spec, args.set)}
    if args.network or args.evidence:
        provenance.update(network=args.network, evidence=args.evidence)
    figures: list = []
    run = write_run(spec, data, method, args.seed, options, out, progress, provenance,
                    extra=lambda post, folder: figures.extend(_figures(post, folder)))
    post, final, notes = run.post, run.out, run.notes
    shown = out if final == out.expanduser().resolve() else final
    problems = post.problems()
    check = _check(spec, post, data) if not (args.data or args.set) else None
    if args.json:
        table = json.loads(run.summary.to_json(orient="index"))
        print(json.dumps({"model": spec.name, "method": method, "seed": args.seed, "out": str(shown),
                          "files": run.files, "summary": table, "problems": problems,
                          "check": None if check is None else {"passed": check.passed, "text": check.text},
                          "prior_sensitivity": run.sensitivity_line, "notes": post.notes + notes}, indent=2))
    elif args.quiet:
        for line in problems:
            print(f"WARNING: {line}")
        if check is not None and not check.passed:
            print(f"WARNING: oracle check failed: {check.text}")
        for note in notes:
            if str(final) in note:  # the run was put beside --out: say where and why
                print(f"note: {note}")
        print(f"wrote {shown}/")
    else:
        print(post.report(all_sites=args.all_sites))
        if run.sensitivity_line is not None:  # power-scaling prior sensitivity (MCMC fits)
            print(run.sensitivity_line)
        if check is not None:
            print(f"oracle check {'passed' if check.passed else 'FAILED'} (the model's embedded data): {check.text}")
        for note in notes:
            print(f"note: {note}")
        for figure in figures:
            print(f"figure {figure.file}: {figure.caption}")
        print(f"\nwrote {shown}/: {', '.join(run.files)}")
    return 0


def _figures(post, folder: Path) -> list:
    """The run's figures (`ppl.figures.run_figures`); one that cannot be drawn is a note, not a failure."""
    from .figures import run_figures

    try:
        return run_figures(post, folder)
    except Exception as exc:
        from ppl_models.errors import one_line

        post.notes.append(f"figures not drawn: {one_line(exc)}")
        return []


def _check(spec, post, data: dict):
    """The model's oracle check (`ppl.checks`) on its embedded data, or None where none applies; a check
    that cannot run says so in its text."""
    from .checks import Check, run_check

    try:
        return run_check(spec.name, post, data)
    except Exception as exc:
        from ppl_models.errors import one_line

        return Check(False, f"the oracle check could not run: {one_line(exc)}")


def cmd_compare(args: argparse.Namespace) -> int:
    from inference import compare

    spec = _spec(args.name)
    methods = args.methods
    for method in methods or ():
        _method(spec, method, "--methods")
    data = _load_data(spec, args)
    progress = not (args.quiet or args.json)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: is empty; name a new directory for the comparison")
    final = None
    if args.out is None:
        comparison = compare(spec, data, methods=methods, seed=args.seed, progress=progress)
    else:  # checked before any fit starts; appears whole or not at all, like a fit's run directory
        manifest = {"command": "compare", "model": spec.name, "methods": methods, "seed": args.seed,
                    "model_options": _model_options(spec, args.set)}
        with run_directory(args.out, manifest) as run:
            comparison = compare(spec, data, methods=methods, seed=args.seed, progress=progress)
            interrupts.checkpoint()
            write_comparison(comparison, run.path)
        final = run.final
        interrupts.checkpoint()
    if args.json:
        methods_table = json.loads(comparison.methods_table().to_json(orient="index"))
        parameters = comparison.parameters_table(max_rows=None)
        means = {m: json.loads(parameters[m].to_json(orient="index")) for m in parameters.columns.levels[0]
                 if m in parameters.columns.get_level_values(0)} if not parameters.empty else {}
        print(json.dumps({"model": spec.name, "seed": args.seed, "methods": methods_table, "parameters": means,
                          "out": None if final is None else str(final)}, indent=2))
    else:
        print(comparison.report())
        if final is not None:
            print(f"\nwrote {final}/: {', '.join(sorted(p.name for p in final.iterdir()))}")
    return 0


def write_comparison(comparison, folder: Path) -> None:
    """The comparison's tables (methods.csv, parameters.csv), its text (report.txt) and each method's
    posterior as ArviZ netCDF (METHOD.nc), into `folder`."""
    comparison.methods_table().to_csv(folder / "methods.csv")
    comparison.parameters_table(max_rows=None).to_csv(folder / "parameters.csv")
    (folder / "report.txt").write_text(comparison.report(max_rows=10**9) + "\n", encoding="utf-8")
    for one in comparison.runs:
        if one.posterior is not None:
            one.posterior.to_netcdf(folder / f"{one.method}.nc")


def cmd_render(args: argparse.Namespace) -> int:
    import plates

    spec = _spec(args.name)
    out = Path(args.out)
    graph = plates.graph(spec, _load_data(spec, args))
    if args.query is not None:
        if not args.query.strip():
            raise UsageError("--query: is empty; write it as \"x _|_ theta | z\"")
        xs, ys, zs = plates.parse_query(args.query)
        answer = graph.d_separated(xs, ys, zs)
        given = f" | {', '.join(zs)}" if zs else ""
        print(f"{', '.join(xs)} _|_ {', '.join(ys)}{given}: {'true' if answer else 'false'} "
              f"({'d-separated' if answer else 'd-connected'})")
    final = Path(graph.render(out))  # written through a temporary sibling and a rename
    if final != out:
        print(f"Graphviz 'dot' not found: wrote the DOT source to {final} (install graphviz for {out.suffix})")
    else:
        print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), progress=not args.quiet)


def _add_sbc(sub: Any) -> None:
    s = sub.add_parser("sbc", help="simulation-based calibration: fit many data sets simulated from the prior and "
                                   "test that the true values' ranks among the draws are uniform")
    s.add_argument("name")
    s.add_argument("--method", help="nuts, hmc, svi, map or mle (default: the model's default engine)")
    s.add_argument("--replicates", type=int, default=100, help="simulated data sets, one fit each (default 100)")
    s.add_argument("--out", help="run directory, kept as replicates finish and resumed by a rerun with the same "
                                 "settings (default: runs/NAME-sbc-METHOD)")
    s.add_argument("--executor", choices=("local", "ray", "serial"), default="local",
                   help="local worker processes (default), Ray (pip install 'ppl-suite[ray]'), or this process")
    s.add_argument("--workers", type=int, help="worker processes or Ray CPUs (default: every core)")
    s.add_argument("--address", help="with --executor ray: an existing cluster's address (default: a local Ray)")
    s.add_argument("--seed", type=int, default=0, help="replicate i's randomness follows from (seed, i) alone "
                                                       "(default 0)")
    s.add_argument("--data", help="the model's inputs (.json, .csv or .npz); observed fields are simulated with "
                                  "the shapes given; default: the model's embedded data")
    _add_set(s)
    for flag, (option, methods) in _FLAGS.items():
        s.add_argument(f"--{flag}", type=int, help=_flag_help(option, methods) + " for every replicate's fit")
    s.add_argument("--quiet", action="store_true", help="no progress bar; print the problems and where the run went")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def cmd_sbc(args: argparse.Namespace) -> int:
    from .sbc_run import SBCInterrupted, check_executor_flags, run_sbc

    spec = _spec(args.name)
    method = _method(spec, args.method)
    if not 1 <= args.replicates <= 100_000:
        raise UsageError(f"--replicates: must be from 1 to 100000, got {args.replicates}")
    check_executor_flags(args.executor, args.address, args.workers)
    options = _fit_options(args, method)
    data = _load_data(spec, args)
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: is empty; name a directory for the run")
    out = args.out or f"runs/{spec.name}-sbc-{method}"
    try:
        run = run_sbc(spec, data, method, args.replicates, args.seed, options, out, args.executor, args.workers,
                      args.address, progress=not (args.quiet or args.json))
    except SBCInterrupted as exc:
        signum = interrupts.pending_signal() or signal.SIGINT
        print(f"ppl: interrupted ({signal.Signals(signum).name}); {exc}", file=sys.stderr)
        interrupts.reported()
        return interrupts.EXIT_STATUS.get(signum, 130)
    result = run.result
    if args.json:
        print(json.dumps({**result.to_dict(), "out": str(run.folder), "files": run.files, "notes": run.notes},
                         indent=2, default=float))
    elif args.quiet:
        for line in result.problems():
            print(f"WARNING: {line}")
        print(f"wrote {out}/")
    else:
        for note in run.notes:
            print(f"note: {note}")
        print(result)
        print(f"\nwrote {out}/: {', '.join(run.files)}")
    return 0 if result.ok else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status.

    As the program itself (``argv`` None) the process leaves with `os._exit` once the command is over and
    its output flushed: an interrupt that landed inside a C extension's import marks the interpreter so
    that its shutdown re-raises SIGINT, which would replace the command's own exit status with -2.
    """
    code = _main(argv)
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:
        with interrupts.handle_signals(restore=argv is not None):
            try:
                with interrupts.held():  # torch and Pyro: an interrupt inside their import can abort Python
                    _import_engines()
                interrupts.checkpoint()
                return _run(argv)
            except KeyboardInterrupt:
                signum = interrupts.pending_signal() or signal.SIGINT
                done = interrupts.completed_run()
                outcome = f"the run was already complete in {done}" if done else "nothing was replaced"
                print(f"ppl: interrupted ({signal.Signals(signum).name}); {outcome}", file=sys.stderr)
                return interrupts.EXIT_STATUS.get(signum, 130)
            finally:
                if argv is None:
                    interrupts.hold_until_exit()
    except KeyboardInterrupt:  # a second signal while the first was being reported
        return 130


def _import_engines() -> None:
    """torch, Pyro and ArviZ, imported once the signal handlers are in place and interrupts are held (an
    interrupt inside torch's import can abort Python): so this module and those it imports at the top
    (`io`, `rundir`, `runs`, `interrupts`) import none of them, `ppl_models` included (it imports torch)."""
    with warnings.catch_warnings():
        # ArviZ 0.x announces its 1.0 refactor on import; the suite supports the version installed (a
        # command's output is not the place for a library's roadmap)
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        import inference  # noqa: F401  (torch, Pyro, ArviZ)
        import plates  # noqa: F401
        import ppl_models  # noqa: F401


def _run(argv: Sequence[str] | None) -> int:
    debug = bool(os.environ.get("PPL_DEBUG"))
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command is None:  # `ppl` alone: the commands and what each does
            parser.print_help()
            return 0
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            code = {"list": cmd_list, "fit": cmd_fit, "compare": cmd_compare, "render": cmd_render,
                    "demo": cmd_demo, "sbc": cmd_sbc}[args.command](args)
        interrupts.checkpoint()  # a signal recorded while the run was put in place
        return code
    except Exception as exc:  # one line, never a traceback (unless PPL_DEBUG is set)
        from ppl_models.errors import InputError, one_line  # (not at the top: see `_import_engines`)

        if debug:
            raise
        if isinstance(exc, (UsageError, OutError, InputError)):
            flag = _FLAG_OF.get(getattr(exc, "field", None))
            name = flag if flag is None or flag[2:] == exc.field else f"{flag} ({exc.field})"
            text = f"{name}: {exc.problem}" if flag else str(exc)
            print(f"ppl: error: {text}", file=sys.stderr)
            return EXIT_USAGE
        print(f"ppl: failed: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
