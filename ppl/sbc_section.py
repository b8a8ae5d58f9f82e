"""The demo report's SBC section: simulation-based calibration of the cheap models (`inference.sbc`).

    html, lines = sbc_section(folder)        # writes folder/sbc/*.png and folder/sbc/run.json

Each run in `RUNS` gets its ECDF-difference plot (with ArviZ's simultaneous band) and its verdicts in words.
Budgets are small (`REPLICATES` replicates, short chains, stated on the page) so that the section takes
about a minute on two cores: at that R the test catches a posterior sd off by 30 % only about half of the
time (docs/sbc.md), so a pass here is a smoke test, and ``ppl sbc NAME --replicates 200`` is the real one.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from ppl_models.errors import one_line

REPLICATES = 20  # the fewest that give a verdict (inference.uniformity.MIN_REPLICATES)
SHORT_CHAIN = {"num_chains": 1, "num_samples": 100, "num_warmup": 60}
MIXTURE_SAMPLES = 80
RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("coin", "nuts", SHORT_CHAIN),
    ("linear_regression", "nuts", SHORT_CHAIN),
    ("coin_mixture", "nuts", {**SHORT_CHAIN, "num_samples": MIXTURE_SAMPLES}),  # enumeration of z: the costliest of the four
    ("coin", "svi", {"num_steps": 300, "num_samples": 200}),
)


def sbc_section(folder: Path, progress: bool = False, runs: tuple = RUNS,
                replicates: int = REPLICATES) -> tuple[str, list[str]]:
    """(the section's HTML, one line per run for the terminal); figures go to ``folder/sbc/``. A run that
    fails is reported in its place and the others go on."""
    from inference import sbc
    from inference.executors import LocalExecutor

    e = html.escape
    out = folder / "sbc"
    out.mkdir(exist_ok=True)
    parts = ["<section id='sbc'><h2>Simulation-based calibration</h2>",
             f"<p class='muted'>For each run: {replicates} data sets simulated from the prior, each fitted, and each "
             "parameter's true value ranked among its posterior draws (MCMC draws thinned to about their effective "
             "sample size). The plot shows the ECDF of the ranks' PIT values minus the uniform CDF, inside the "
             "simultaneous band a calibrated engine stays in with probability 95 % over all parameters. Budgets "
             f"are small ({replicates} replicates; NUTS: one chain of {SHORT_CHAIN['num_warmup']} warm-up + "
             f"{SHORT_CHAIN['num_samples']} draws, {MIXTURE_SAMPLES} for the mixture; SVI: 300 steps): at this R a posterior sd off by 30 % is caught about half of the "
             "time (docs/sbc.md), so run <code>ppl sbc NAME --replicates 200</code> for a real check.</p>"]
    lines, files = [], []
    with LocalExecutor() as pool:
        for model, method, options in runs:
            start = time.perf_counter()
            title = f"{model} by {method}"
            try:
                result = sbc(model, method=method, replicates=replicates, seed=0, executor=pool, progress=progress,
                             **options)
                image = f"{model}-{method}.png"
                result.plot(out / image)
                files.append(image)
                verdicts = "".join(f"<li><code>{e(p)}</code>: <span class='{'ok' if v.startswith('passes') else 'bad'}'>"
                                   f"{e(v)}</span></li>" for p, v in result.verdicts.items())
                problems = result.problems()
                status = "passes" if result.passed else "FAILS"
                parts.append(f"<h3>{e(title)}: <span class='{'ok' if result.passed else 'bad'}'>{status}</span></h3>"
                             f"<p class='muted'>{len(result.ok)} replicates in {time.perf_counter() - start:.0f} s, "
                             f"{e(result.executor)}</p><img src='sbc/{e(image)}' alt='ECDF plot of {e(title)}'>"
                             f"<ul>{verdicts}</ul>"
                             + "".join(f"<p class='muted'>{e(p)} not ranked: {e(w)}</p>" for p, w in result.skipped.items())
                             + "".join(f"<p class='warn'>{e(t)}</p>" for t in problems))
                brief = ", ".join(f"{p} {v.split(':')[0]}" for p, v in result.verdicts.items())
                lines.append(f"SBC {title}: {status} ({brief})")
            except Exception as exc:  # a run that fails is reported; the section goes on
                text = one_line(exc)
                parts.append(f"<h3>{e(title)}</h3><p class='bad'>failed: {e(text)}</p>")
                lines.append(f"SBC {title} failed: {text}")
    (out / "run.json").write_text(json.dumps({"written_by": "ppl", "command": "demo-sbc", "files": sorted(files)},
                                             indent=2) + "\n", encoding="utf-8")
    parts.append("</section>")
    return "\n".join(parts), lines
