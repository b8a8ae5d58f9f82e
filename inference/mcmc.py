"""NUTS and HMC: the fast batched backend (`inference.fast`, the default) or Pyro's own kernels (the reference path,
``backend="pyro"``), one chain after another.

Pyro's kernels keep the per-transition statistics ArviZ wants (acceptance, tree depth, energy) in local
variables, so `_Recording` subclasses them and reads each statistic where it is exact:

- acceptance probability: recovered from the kernel's running mean (it restarts after warm-up);
- energy: the Hamiltonian at the start of the transition (potential + kinetic), as Stan reports it;
- n_steps: leapfrog steps taken, counted at the integrator; tree depth follows from it for NUTS;
- diverging: the kernel's own divergence list; step size: the adapted step size; lp: the log density.

Chains run one after another in this process (on a two-core machine, worker processes cost more
than they give), each from its own seed, so a run is reproducible from `seed`.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pyro
from pyro.infer.mcmc import HMC, MCMC, NUTS

from .structure import ModelStructure, enumerable

STAT_NAMES = ("diverging", "energy", "lp", "acceptance_rate", "step_size", "n_steps", "tree_depth")


class _Recording:
    """Mixin that records one row of statistics per transition."""

    _ke_first: float | None = None
    _pe_first: float | None = None
    _leapfrogs = 0

    def _start_records(self) -> None:
        self.records: list[dict] = []
        self._ke_first = None
        self._pe_first = None

    def _fetch_from_cache(self):
        z, pe, grads = super()._fetch_from_cache()
        if self._pe_first is None and pe is not None:
            self._pe_first = float(pe)
        return z, pe, grads

    def _kinetic_energy(self, r_unscaled):
        ke = super()._kinetic_energy(r_unscaled)
        if self._ke_first is None:
            self._ke_first = float(ke)
        return ke

    def sample(self, params):
        if not hasattr(self, "records"):
            self._start_records()
        self._ke_first = self._pe_first = None
        self._leapfrogs = 0
        mean_before = self._mean_accept_prob
        divergences_before = len(self._divergences)
        out = super().sample(params)
        t, warmup = self._t, self._warmup_steps
        n = t - warmup if t > warmup else t
        accept = n * self._mean_accept_prob - (n - 1) * mean_before if n > 1 else self._mean_accept_prob
        _, pe_last, _ = HMC._fetch_from_cache(self)
        pe_first = self._pe_first if self._pe_first is not None else float(pe_last)
        self.records.append(
            {
                "diverging": len(self._divergences) > divergences_before,
                "energy": pe_first + (self._ke_first or 0.0),
                "lp": -float(pe_last),
                "acceptance_rate": float(min(max(accept, 0.0), 1.0)),
                "step_size": float(self.step_size),
                "n_steps": self._steps_taken(),
            }
        )
        return out


class _RecordingNUTS(_Recording, NUTS):
    def _build_basetree(self, *args, **kwargs):
        self._leapfrogs += 1
        return super()._build_basetree(*args, **kwargs)

    def _steps_taken(self) -> int:
        return self._leapfrogs


class _RecordingHMC(_Recording, HMC):
    def _steps_taken(self) -> int:
        return int(self.num_steps)


def run_mcmc(
    model: Callable,
    data: dict,
    structure: ModelStructure,
    *,
    method: str,
    seed: int,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    full_mass: bool | None = None,
    jit_compile: bool = False,
    step_size: float = 1.0,
    trajectory_length: float | None = None,
    progress: bool = True,
    backend: str = "fast",
    warm_start: bool = True,
    adaptation: str = "pooled",
    batching: str = "auto",
    compiler: str = "auto",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """Run `num_chains` chains of NUTS or HMC; return draws and statistics shaped (chain, draw, ...) and notes.

    ``backend="fast"`` runs every chain at once on the batched sampler (`inference.fast`); if the model
    cannot run that way, this falls back to Pyro's kernels and says why, in one line, in the notes.
    ``backend="pyro"`` runs Pyro's own kernels, one chain after another.
    """
    options = dict(num_chains=num_chains, num_samples=num_samples, num_warmup=num_warmup,
                   target_accept=target_accept, max_tree_depth=max_tree_depth, full_mass=full_mass,
                   jit_compile=jit_compile, step_size=step_size, trajectory_length=trajectory_length)
    notes: list[str] = []
    if backend == "fast":
        from .fast import NoStartingPoint, NotBatchable, run_fast_mcmc

        try:
            return run_fast_mcmc(model, data, structure, method=method, seed=seed, progress=progress,
                                 warm_start=warm_start, adaptation=adaptation, batching=batching,
                                 compiler=compiler, **options)
        except NoStartingPoint as exc:
            from .evidence import diagnose_start

            found = diagnose_start(model, data, structure)  # the data's fault: say so, and stop here
            if found is not None:
                raise found from None
            # else perhaps the batched evaluation's fault (a model that does not broadcast): Pyro's kernels
            notes.append(f"fast backend unavailable ({exc}): ran Pyro's {method.upper()} kernels instead")
        except NotBatchable as exc:
            notes.append(f"fast backend unavailable ({exc}): ran Pyro's {method.upper()} kernels instead")
    else:
        notes.append(f"Pyro backend: Pyro's {method.upper()} kernels, {num_chains} chain"
                     f"{'s one after another' if num_chains > 1 else ''}")
    from .fast import one_thread

    with one_thread():
        try:
            samples, sample_stats = _run_pyro(model, data, structure, method=method, seed=seed,
                                              progress=progress, **options)
        except ValueError as exc:
            if "cannot find valid initial params" not in str(exc):
                raise _own_error(exc, model) from None
            raise _no_start(model, data, structure, "Pyro found no starting point with a finite log density "
                            "in 100 tries") from None
        except Exception as exc:
            raise _own_error(exc, model) from None
    return samples, sample_stats, notes


def _own_error(exc: BaseException, model: Callable) -> BaseException:
    """`exc`, or the one-line `ModelError` naming the program's line when the program's own code raised it
    (``mu.numpy()`` on a value that needs a gradient, say) under Pyro's kernels."""
    from .structure import program_failure

    found = program_failure(exc, model)
    return found if found is not None else exc


class NoStartError(RuntimeError):
    """No starting point of finite log density, and no observed site to blame (a real failure, exit 1)."""


def _no_start(model: Callable, data: dict, structure: ModelStructure, what: str) -> Exception:
    """The one-line error for an MCMC run without a starting point: the data's fault when an observed
    site's log-density is not finite at every prior draw (`evidence.diagnose_start`), else a `NoStartError`."""
    from .evidence import diagnose_start

    found = diagnose_start(model, data, structure)
    if found is not None:
        return found
    return NoStartError(f"{what}; the model's log density is -inf or NaN there for a reason other than the "
                        "observed data (a prior's support, the model's own arithmetic)")


def _run_pyro(
    model: Callable,
    data: dict,
    structure: ModelStructure,
    *,
    method: str,
    seed: int,
    num_chains: int,
    num_samples: int,
    num_warmup: int,
    target_accept: float,
    max_tree_depth: int,
    full_mass: bool,
    jit_compile: bool,
    step_size: float,
    trajectory_length: float | None,
    progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Pyro's own NUTS or HMC kernels, one chain after another."""
    per_chain, stats = [], []
    for chain in range(num_chains):
        pyro.set_rng_seed((seed * 1_000 + chain) % 2**32)  # NumPy's seed range; unchanged below seed 4294967
        common = dict(
            step_size=step_size,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            full_mass=bool(full_mass),  # None ("auto") means diagonal on Pyro's kernels, as Pyro's default
            target_accept_prob=target_accept,
            jit_compile=jit_compile,
            ignore_jit_warnings=True,
            max_plate_nesting=structure.max_plate_nesting,
        )
        if method == "nuts":
            kernel = _RecordingNUTS(enumerable(model), max_tree_depth=max_tree_depth, **common)
        else:
            length = trajectory_length if trajectory_length is not None else 2 * math.pi
            kernel = _RecordingHMC(enumerable(model), trajectory_length=length, **common)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup, num_chains=1,
                    disable_progbar=not progress)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.tensor results are registered as constants.*")
            mcmc.run(**data)
        draws = mcmc.get_samples(group_by_chain=True)
        per_chain.append({k: v.detach().cpu().numpy() for k, v in draws.items()})
        records = kernel.records[-num_samples:]
        row = {name: np.array([r[name] for r in records]) for name in records[0]} if records else {}
        if method == "nuts" and row:
            row["tree_depth"] = np.floor(np.log2(np.maximum(row["n_steps"], 1))).astype(int) + 1
        stats.append(row)
    samples = {k: np.concatenate([c[k] for c in per_chain], axis=0) for k in per_chain[0]}
    sample_stats = {k: np.stack([s[k] for s in stats]) for k in stats[0]} if stats[0] else {}
    return samples, sample_stats
