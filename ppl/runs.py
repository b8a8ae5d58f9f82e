"""One fit written as a run directory: `write_run` fits a model and writes ``posterior.nc``,
``summary.csv``, ``model.svg`` and ``run.json`` into a folder that appears whole or not at all
(`ppl.rundir`). `ppl fit` and the demo both write their runs through it.

    >>> import tempfile, pathlib, ppl_models
    >>> from ppl.runs import write_run
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "coin"
    >>> run = write_run(ppl_models.get("coin"), ppl_models.get("coin").default_data(), "nuts", 0,
    ...                 {"num_samples": 100, "num_warmup": 100}, out, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import interrupts
from .rundir import RunDirectory, run_directory


class RunResult(NamedTuple):
    """What `write_run` produced: the posterior, its summary table, the run directory and its files."""

    post: Any
    summary: Any
    out: Path
    files: list[str]
    notes: list[str]
    sensitivity: Any = None  # the prior-sensitivity table (`Posterior.prior_sensitivity`), None where it does not apply
    sensitivity_line: str | None = None  # its one line, `Posterior.sensitivity_note`


def write_run(spec, data: dict, method: str, seed: int, options: dict, out: Path, progress: bool,
              provenance: dict | None = None, extra: Callable[[Any, Path], None] | None = None) -> RunResult:
    """Fit and write the run directory `out` whole (`ppl.rundir`); `out` is checked before the fit starts.

    `extra(post, folder)` may add files of its own (the demo's figures) before the directory is committed.
    """
    from inference import fit

    manifest = {"command": "fit", "model": spec.name, "method": method, "seed": seed, "options": options,
                **(provenance or {})}
    with run_directory(out, manifest) as run:
        tmp = run.path
        post = fit(spec, data=data, method=method, seed=seed, progress=progress, **options)
        interrupts.checkpoint()
        if getattr(spec, "relabel", None) is not None:
            relabel(post, spec)
        post.to_netcdf(tmp / "posterior.nc")
        summary = post.summary(list(post.samples), round_to="none")  # every site at full precision; the printed table rounds
        summary.to_csv(tmp / "summary.csv")
        interrupts.checkpoint()
        notes = _draw(spec, data, tmp / "model.svg")
        if extra is not None:
            extra(post, tmp)
        files = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("."))
    notes += _moved(run)
    interrupts.checkpoint()  # a signal held back while the run was put in place: stop here, say it is complete
    sensitivity, line = prior_sensitivity(post)
    return RunResult(post, summary, run.final, sorted({*files, "run.json"}), notes, sensitivity, line)


def prior_sensitivity(post) -> tuple[Any, str | None]:
    """The power-scaling prior-sensitivity table of an MCMC fit and its line (None, None where it does not
    apply); a fit whose sensitivity ArviZ cannot compute gets a line saying so, never a failed run."""
    try:
        table = post.prior_sensitivity()
    except Exception as exc:  # noqa: BLE001 (a diagnostic, not the run)
        from ppl_models.errors import one_line  # (not at the top: the command line imports this module early)

        return None, f"prior sensitivity not computed: {one_line(exc)}"
    return table, (post.sensitivity_note(table) if table is not None else None)


def _moved(run: RunDirectory) -> list[str]:
    if run.moved_because is None:
        return []
    return [f"{run.moved_because} while this run worked, so it was left alone; the run was written to "
            f"{str(run.final)!r} instead"]


def relabel(post, spec) -> None:
    """Replace the draws by the model's canonical form of each (label switching: chains of a symmetric
    mixture settle in different labellings, factor loadings in different rotations, which R-hat would
    report as disagreement)."""
    post.replace_samples(spec.relabel(post.samples), f"draws relabelled with {spec.name}'s {spec.relabel.__name__}(): the posterior does not "
                         "change under relabelling (or rotation) of its components, so chains may settle in "
                         "different ones; each draw is put in one canonical form")


def _draw(spec, data: dict, path: Path) -> list[str]:
    """Write the plate diagram; when Graphviz is missing, the DOT source is written instead."""
    import plates

    graph = plates.graph(spec, data)
    result = graph.render(path)
    written = Path(result) if isinstance(result, (str, os.PathLike)) else path
    return [] if written.suffix == path.suffix else [f"Graphviz 'dot' not found: wrote {written.name} instead of {path.name}"]
