"""The fast MCMC backend's run: every chain in one batch (`sampler`) on a compiled batched potential (`potential`).

`run_fast_mcmc` has the same contract as `mcmc.run_mcmc`: draws ``(chain, draw, *site_shape)`` of every
continuous latent site in the model's own (constrained) space, and the same per-draw statistics. It raises
`NotBatchable` (one line: what failed) when the model cannot run this way (its recorded potential does not
reproduce a plain trace of it, or recording it failed); the caller then falls back to Pyro's kernels.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable

import numpy as np
import torch
import torch.fx as fx

from ppl_models.errors import one_line

from .adaptation import ADAPTATIONS, pooling
from .sampler import AHEAD_OF_TIME_JUDGEMENTS, Judgement, probe_state, run_chains
from .tree import CompiledLeaf, Leaf, compilable
from .potential import NotBatchable, Potential, is_numerical_failure
from ..structure import ModelStructure
from ..warm_start import laplace

__all__ = ["run_fast_mcmc", "leaf_step_graph", "NotBatchable", "NoStartingPoint", "ADAPTATIONS",
           "AHEAD_OF_TIME_JUDGEMENTS", "Judgement", "DENSE_MAX_DIM", "DENSE_MIN_CONDITION"]

# ``full_mass=None`` (the default) adapts a dense mass matrix up to this many unconstrained dimensions and
# a diagonal one above. Measured (benchmarks/README.md, both warm-started): on the correlated regression
# posteriors (kidiq, sblrc, earnings, nes1992) dense gave 4-20x the ESS per second of diagonal;
# on the others (logistic regression, mesquite, the Gaussian mixture, eight schools) 0.6-1.2x;
# its cost, a D x D product per leapfrog step, is negligible at this size, and a D x D covariance is
# still estimated well from the last warm-up window's few hundred draws. In one dimension the two are the
# same metric and the diagonal one is used (six fewer operations per leapfrog step).
DENSE_MAX_DIM = 10
# ... and only where the curvature at the mode (the warm start's Laplace approximation) has a correlation
# matrix of condition number at least this: for a Gaussian that is the conditioning a diagonal metric
# leaves, with trajectories about its square root longer than under an exact dense metric, while a dense
# estimate from a few hundred warm-up draws brings its own noise. Measured (benchmarks/README.md, seed 0
# and three-seed medians): the posteriors that gain from dense have 23.8 (sblrc, 4.7x), 180 (kidiq),
# 276 (nes1992, 17x) and 1214 (earnings); those that do not, 2.6 (logistic regression, dense 0.83x),
# 4.0 (the Gaussian mixture, 0.9-1.2x), 5.3 (mesquite, 0.94x) and 15.3 (eight schools, 0.62-0.94x; its
# mode is a funnel's neck, whose curvature overstates the posterior's correlation).
DENSE_MIN_CONDITION = 20.0


def _log_density_or_minus_inf(potential: Potential, z: torch.Tensor) -> torch.Tensor:
    """Each row's log density by one plain trace of the program; -inf where it fails numerically."""
    lp = z.new_full(z.shape[:1], -math.inf)
    for c in range(z.shape[0]):
        try:
            lp[c] = potential.one_chain_log_density(z[c])
        except Exception as exc:
            if not is_numerical_failure(exc):
                raise NotBatchable(
                    f"the model failed at a random starting point ({one_line(exc, limit=120)})") from exc
    return lp


def _initial_points(potential: Potential, C: int, generator: torch.Generator, radius: float = 2.0,
                    tries: int = 100) -> torch.Tensor:
    """Uniform(-radius, radius) in unconstrained space, as Pyro's `init_to_uniform`, redrawn for any
    chain whose log density is not finite."""
    dtype = potential.dtype
    z = (torch.rand(C, potential.dim, generator=generator, dtype=dtype) * 2 - 1) * radius
    for _ in range(tries):
        with torch.no_grad():
            lp = _log_density_or_minus_inf(potential, z)
        bad = ~torch.isfinite(lp)
        if not bool(bad.any()):
            return z
        fresh = (torch.rand(C, potential.dim, generator=generator, dtype=dtype) * 2 - 1) * radius
        z = torch.where(bad.unsqueeze(-1), fresh, z)
    raise NoStartingPoint(f"no starting point with a finite log density found in {tries} tries at random "
                          f"points of (-{radius:g}, {radius:g}) in unconstrained space")


class NoStartingPoint(NotBatchable):
    """No chain found a point of finite log density: the model (or its data) is to blame, not the batching,
    so `mcmc.run_mcmc` asks `evidence.diagnose_start` why instead of falling back to Pyro's kernels."""


def run_fast_mcmc(model: Callable, data: dict, structure: ModelStructure, *, method: str, seed: int,
                  num_chains: int = 4, num_samples: int = 1000, num_warmup: int = 1000, target_accept: float = 0.8,
                  max_tree_depth: int = 10, full_mass: bool | None = None, jit_compile: bool = False,
                  step_size: float = 1.0, trajectory_length: float | None = None, progress: bool = True,
                  compile: bool = True, warm_start: bool = True, adaptation: str = "pooled",
                  batching: str = "auto", compiler: str = "auto",
                  judgements: tuple[Judgement, ...] = AHEAD_OF_TIME_JUDGEMENTS
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """Run `num_chains` chains of NUTS or HMC as one batch; returns (samples, sample_stats, notes).

    ``jit_compile`` is accepted for symmetry with the Pyro backend; this backend always compiles its
    potential when the compiled graph reproduces the eager one (``compile=False`` turns that off).
    ``full_mass=None`` picks a dense mass matrix from 2 up to `DENSE_MAX_DIM` dimensions where the warm start
    finds a correlation matrix of condition number at least `DENSE_MIN_CONDITION`, a diagonal one otherwise.
    ``warm_start`` starts warm-up from the curvature at the mode instead of the identity metric
    (`warm_start.laplace`; the chains still start from dispersed random points).
    ``adaptation`` (`ADAPTATIONS`): ``"pooled"`` gives every chain the same step size and metric, adapted
    from all chains' warm-up draws; ``"pooled metric"`` the same metric and a step size each; ``"per chain"``
    adapts each chain on its own, as Stan does.
    ``batching`` (`potential.BATCHINGS`) and ``compiler`` (`compile.COMPILERS`) pick how the chain
    dimension is added and what compiles; the defaults pick by themselves. With ``compiler="auto"``,
    `judgements` are the transitions after which the run judges whether AOTInductor pays, each with the
    margin it asks of the predicted saving (the default, `AHEAD_OF_TIME_JUDGEMENTS`, is measured:
    benchmarks/aot_decision.py compares others).
    """
    with one_thread():
        return _run(model, data, structure, method=method, seed=seed, num_chains=num_chains, num_samples=num_samples,
                    num_warmup=num_warmup, target_accept=target_accept, max_tree_depth=max_tree_depth,
                    full_mass=full_mass, step_size=step_size, trajectory_length=trajectory_length,
                    progress=progress, compile=compile, warm_start=warm_start, adaptation=adaptation,
                    batching=batching, compiler=compiler, judgements=judgements)


def leaf_step_graph(model: Callable, data: dict, structure: ModelStructure, *, num_chains: int = 4, seed: int = 0,
                    max_tree_depth: int = 10) -> tuple[fx.GraphModule, tuple]:
    """The NUTS leaf step of `model` on `data` for `num_chains` chains as the fast backend hands it to its
    compiler: a graph of ATen operations, and inputs of the shapes it was recorded at (the chains' random
    starting points, a diagonal metric). `compile_graph` compiles it (benchmarks/aot_configs.py compares
    AOTInductor's settings on it); ``graph.graph.print_tabular()`` lists its operations.

    >>> from inference.structure import inspect_model
    >>> graph, example = leaf_step_graph(model, data, inspect_model(model, data))  # doctest: +SKIP
    """
    generator = torch.Generator().manual_seed(int(seed))
    potential = Potential(model, data, structure, num_chains, compile=True, batching="auto", compiler="torchscript")
    z0 = _initial_points(potential, num_chains, generator)
    potential.prepare(z0)
    U, grad = potential.value_and_grad(z0)
    leaf = Leaf(potential.eager, robust=potential.value_and_grad, is_failure=is_numerical_failure)
    example = probe_state(z0, U, grad, torch.ones_like(z0), generator, max(max_tree_depth, 1))
    with warnings.catch_warnings():  # (tracer warnings, as when the backend records it)
        warnings.simplefilter("ignore")
        graph = leaf.record(example)
    found = compilable(graph)  # (None: a check no compiled graph keeps; the benchmark's compile then fails)
    return (graph if found is None else found[0]), tuple(CompiledLeaf.flatten(*example))


@contextlib.contextmanager
def one_thread():
    """Torch's intra-op threads set to 1 for the block. MCMC's tensors are small, and threads cost more
    than they give: with both cores of a two-core machine busy, Pyro's NUTS on the Gaussian mixture took
    99 s with two threads and 24 s with one (`ppl demo` runs under it too: the VAE's demo fit took 5.6 s
    with one thread and 15.6 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(model, data, structure, *, method, seed, num_chains, num_samples, num_warmup, target_accept,
         max_tree_depth, full_mass, step_size, trajectory_length, progress, compile, warm_start, adaptation,
         batching, compiler, judgements):
    generator = torch.Generator().manual_seed(int(seed))
    potential = Potential(model, data, structure, num_chains, compile=compile, batching=batching, compiler=compiler)
    auto_metric = full_mass is None
    if auto_metric:  # see DENSE_MAX_DIM (in one dimension both are the same metric)
        full_mass = 1 < potential.dim <= DENSE_MAX_DIM
    z0 = _initial_points(potential, num_chains, generator)
    potential.prepare(z0)
    how_compiled = ["eager potential" if method == "hmc" else "eager leapfrog step"]
    if method == "hmc" and compile:  # HMC calls the potential itself; NUTS compiles its whole leaf step instead
        probe = z0 + 0.1 * torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
        if potential.compile([z0, probe]):
            how_compiled[0] = "compiled potential"

    initial_inverse_mass, warm_note = None, None
    if warm_start and num_warmup > 0:
        approx, how = laplace(lambda z: _robust_eager(potential, z), z0[0])
        if approx is None:
            warm_note = f"warm-up from the identity metric and random starting points ({how})"
        else:
            if auto_metric and full_mass and approx.correlation_condition() < DENSE_MIN_CONDITION:
                full_mass = False  # too little for a dense metric to gain: see DENSE_MIN_CONDITION
            initial_inverse_mass = approx.inverse_mass(num_chains, full_mass)
            warm_note = f"warm-up started from the curvature at the mode ({how})"

    def record(how: str) -> None:
        how_compiled[0] = how

    draws, stats = run_chains(potential.value_and_grad, z0, method=method, num_samples=num_samples,
                              num_warmup=num_warmup, target_accept=target_accept, max_tree_depth=max_tree_depth,
                              full_mass=full_mass, step_size=step_size, trajectory_length=trajectory_length,
                              generator=generator, progress=progress,
                              traceable=potential.eager if compile and method == "nuts" else None,
                              is_failure=is_numerical_failure,
                              on_compiled=record if method == "nuts" else None,
                              initial_inverse_mass=initial_inverse_mass, compiler=compiler,
                              adaptation=adaptation, judgements=judgements)
    with torch.no_grad():
        values = potential.constrain(draws)
    samples = {name: v.detach().cpu().numpy() for name, v in values.items()}
    note = (f"fast backend: {num_chains} chains advanced as one batch ({potential.batching}), {how_compiled[0]}, "
            f"{'dense' if full_mass else 'diagonal'} mass matrix"
            f"{_adapted(adaptation) if num_chains > 1 else ''}")
    return samples, stats, [note] + ([warm_note] if warm_note else [])


def _adapted(adaptation: str) -> str:
    """The backend note's words for a warm-up that is not the default one."""
    pooled = pooling(adaptation)
    if pooled.step:
        return ""
    return ", one metric for all chains and a step size per chain" if pooled.metric else ", adapted per chain"


def _robust_eager(potential: Potential, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, dU/dz) at any number of points, uncompiled; chains whose arithmetic fails get U = inf."""
    try:
        return potential.eager(z)
    except Exception as exc:
        if not is_numerical_failure(exc):
            raise
        return potential.per_chain(z)
