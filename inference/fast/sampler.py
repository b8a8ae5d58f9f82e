"""The sampling loop of the fast backend: warm-up and draws of every chain of ``z0`` together.

`run_chains` compiles the NUTS leaf step around the model's traceable potential (checked on random
`probe_state`s) and the doubling loop around that (`tree`), adapts each chain's step size and mass matrix
during warm-up (`adaptation`), then records the draws and Stan's per-draw statistics.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from .adaptation import DualAveraging, WindowedCovariance, adaptation_windows, find_reasonable_step_size, pooling
from .state import LeafInput, LeafState, SubtreeConstants
from .compile import ahead_of_time_available, ahead_of_time_pays
from .tree import Integrator, Leaf, Metric, NUTSKernel, ValueAndGrad, hmc_transition, velocity

__all__ = ["run_chains", "probe_state", "expected_leaves", "Judgement", "AHEAD_OF_TIME_JUDGEMENTS", "EARLY_TREES"]


class Judgement(NamedTuple):
    """After transition `at`, ``compiler="auto"`` compiles the leaf step ahead of time if the saving it
    predicts over the rest of the run, from the tree sizes of transitions `at` // 2 + 1 .. `at`, is at least
    `margin` times the compile's cost (`compile.ahead_of_time_pays`)."""
    at: int
    margin: float


# ``compiler="auto"`` judges at these transitions, each on the second half of the transitions before it
# (the first ones, before dual averaging settles, are not typical of the run), the first verdict to pay
# compiling. As early as the judgement allows, because those transitions are the run's dearest: the
# horseshoe's first 30 take 8 s under TorchScript (trees of 700-1000 leaves at about 340 us a leaf), and a
# refit that loads the cached package runs them all the same.
# - At 30, any saving: at 20 the rule missed factor analysis (`ppl demo`: its trees grow from 22 leaves
#   over transitions 1-10 to 300-370 over 21-80); at 30 it made the decisions it made at 50 on the
#   horseshoe, factor analysis, the HMM and the centred eight schools (benchmarks/README.md, "When the rule
#   judges").
# - At 10, a saving of 4 times the compile or more: the early trees can be long and short-lived (the
#   Gaussian mixture's predict 2.6-2.9x on two seeds of four, for a fit shorter than the compile), while
#   the horseshoe's predict 7.1-8.0x (three seeds); compiling it 20 transitions earlier took 2-2.5 s off
#   its fit and its refit (27.9 -> 26.0 s, 17.5 -> 15.0 s: benchmarks/README.md, "Judging at transition 10").
AHEAD_OF_TIME_JUDGEMENTS = (Judgement(at=10, margin=4.0), Judgement(at=30, margin=1.0))
# ... and expects the trees after the warm-up's first metric window to be this many times shorter than
# those: the batch's longest trajectory over transitions 16-30 against its mean after transition 100 was
# 4.6-5.3x on the centred eight schools (seeds 0 and 1), 3.9-4.0x on the horseshoe, 2.0x on the HMM and
# 1.6x on factor analysis (the chains start far from the typical set, and the warm start's metric is only
# the mode's curvature). Without it the rule compiled the centred eight schools' step (22 s for a fit of
# 4-8 s).
EARLY_TREES = 4.0


def expected_leaves(rate: float, done: int, total: int, first_window_end: int) -> float:
    """The batch's leaf steps over transitions `done` + 1 .. `total`, from `rate` leaves a transition
    measured before the warm-up's first metric window ends (at transition `first_window_end`, 0 when the
    warm-up has no windows): that rate until the window's end, `EARLY_TREES` times less after it."""
    early = max(0, min(first_window_end, total) - done)
    later = total - done - early
    return rate * early + (rate / EARLY_TREES if first_window_end else rate) * later


def probe_state(z, U, grad, inverse_mass, generator, K: int) -> tuple[LeafState, SubtreeConstants, LeafInput]:
    """A random leaf-step input near (z, U, grad), every tensor distinct, to check the compiled leaf
    (`Leaf.compile`) against the eager one; `K` checkpoints."""
    C, D = z.shape
    dtype = z.dtype

    def noise(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype)

    def flags(*shape):
        return torch.rand(shape, generator=generator) < 0.3

    r = noise(C, D)
    active = torch.rand(C, generator=generator) < 0.75
    active[0] = True
    z_edge, g_edge, v_edge = z + 0.01 * noise(C, D), grad + 0.01 * noise(C, D), velocity(inverse_mass, r)
    step = 0.01 * torch.rand(C, 1, generator=generator, dtype=dtype) + 1e-3
    H0 = U + noise(C).abs()
    log_u = torch.rand(C, generator=generator, dtype=dtype).log()
    log_w, s_z, s_U, s_g, r_sum = noise(C), z + noise(C, D), U + noise(C), grad + noise(C, D), noise(C, D)
    diverging, turning = flags(C), flags(C)
    sum_accept = torch.rand(C, generator=generator, dtype=dtype)
    n_steps = torch.randint(0, 5, (C,), generator=generator)
    ck_r, ck_v, ck_sum = noise(C, K, D), noise(C, K, D), noise(C, K, D)
    write, check = flags(K), flags(K)
    return (LeafState(z=z_edge, r=r, g=g_edge, v=v_edge, log_w=log_w, s_z=s_z, s_U=s_U, s_g=s_g, r_sum=r_sum,
                      diverging=diverging, turning=turning, sum_accept=sum_accept, n_steps=n_steps, active=active,
                      ck_r=ck_r, ck_v=ck_v, ck_sum=ck_sum),
            SubtreeConstants(step=step, inverse_mass=inverse_mass.clone(), H0=H0),
            LeafInput(log_u=log_u, write=write, check=check))


# ---- the run ---------------------------------------------------------------------------------------------
def run_chains(value_and_grad: ValueAndGrad, z0: torch.Tensor, *, method: str = "nuts", num_samples: int = 1000,
               num_warmup: int = 1000, target_accept: float = 0.8, max_tree_depth: int = 10,
               full_mass: bool = False, step_size: float = 1.0, trajectory_length: float | None = None,
               generator: torch.Generator, progress: bool = False,
               traceable: ValueAndGrad | None = None,
               is_failure: Callable[[BaseException], bool] | None = None,
               on_compiled: Callable[[str], None] | None = None,
               initial_inverse_mass: torch.Tensor | None = None,
               compiler: str = "auto", adaptation: str = "per chain",
               judgements: tuple[Judgement, ...] = AHEAD_OF_TIME_JUDGEMENTS
               ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Warm up and sample every chain of ``z0`` ``(C, D)`` together.

    `value_and_grad` gives (U, dU/dz) for a ``(C, D)`` batch. `traceable`, if given, is a version of it
    that ``make_fx`` can record (plain tensor code, no compiled parts): the NUTS leaf step is then
    compiled around it, and the doubling loop around that (``on_compiled`` is told which parts are
    compiled). When a leaf step raises an exception that ``is_failure`` accepts (a numerical failure of
    one chain), the step is redone with `value_and_grad`, which must then evaluate the chains one by one
    (see `BatchedPotential.per_chain`). `compiler` names the implementation of `compile` that compiles.

    `initial_inverse_mass` (``(C, D)``, or ``(C, D, D)`` with `full_mass`) is the metric warm-up starts
    from instead of the identity (see `warm_start`). `adaptation` names what the warm-up adapts for all
    chains together (`adaptation.ADAPTATIONS`). With ``compiler="auto"``, `judgements` are when and how
    surely the run judges whether compiling ahead of time pays (`AHEAD_OF_TIME_JUDGEMENTS`).

    Returns the draws ``(C, num_samples, D)`` in unconstrained space and the per-draw statistics
    (diverging, energy, lp, acceptance_rate, step_size, n_steps, and tree_depth for NUTS), each
    ``(C, num_samples)``.
    """
    C, D = z0.shape
    dtype = z0.dtype
    pooled = pooling(adaptation)
    inverse_mass = torch.eye(D, dtype=dtype).expand(C, D, D).clone() if full_mass else torch.ones(C, D, dtype=dtype)
    if initial_inverse_mass is not None:
        if initial_inverse_mass.shape != inverse_mass.shape:
            raise ValueError(f"initial_inverse_mass has shape {tuple(initial_inverse_mass.shape)}, "
                             f"expected {tuple(inverse_mass.shape)}")
        inverse_mass = initial_inverse_mass.to(dtype)
    integrator = Integrator(value_and_grad, Metric(inverse_mass))
    z = z0
    U, grad = value_and_grad(z)
    leaf = Leaf(traceable if traceable is not None else value_and_grad, robust=value_and_grad,
                is_failure=is_failure, compiler=compiler)
    # the compile checks' random probes come from a generator of their own, seeded by one draw that every
    # run makes: compiled or not, the run's own stream then goes on the same, and so do its draws
    probes = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    unavailable = ""  # why AOTInductor, asked for by name, did not compile the leaf step
    if method == "nuts" and traceable is not None:
        examples = [probe_state(z, U, grad, inverse_mass, probes, max(max_tree_depth, 1)) for _ in range(2)]
        if not leaf.compile(examples) and compiler == "inductor":
            unavailable = leaf.why_not
            leaf.compile(examples, compiler="auto")
    eps = torch.full((C, 1), float(step_size), dtype=dtype)
    if num_warmup > 0:
        eps = find_reasonable_step_size(integrator, z, U, grad, eps, generator, leaf)
    averaging = DualAveraging(eps, target_accept, pooled=pooled.step)
    eps = averaging.start
    windows = adaptation_windows(num_warmup)
    window_ends = {end: i for i, (_, end) in enumerate(windows)}
    reference = None  # the scale of the metric's regularisation: the warm start's variances, if given
    if initial_inverse_mass is not None:
        reference = torch.diagonal(inverse_mass, dim1=-2, dim2=-1) if full_mass else inverse_mass
    estimator = WindowedCovariance(C, D, full_mass, dtype, reference, pooled.metric)
    length = trajectory_length if trajectory_length is not None else 2 * math.pi

    kernel = NUTSKernel(leaf, max_tree_depth, C, D, dtype)
    if method == "nuts" and leaf.compiled is not None:
        kernel.compile_tree(integrator.metric, z, U, grad, eps, probes)

    def describe() -> str:
        if leaf.compiled is not None and leaf.compiler == "inductor":
            return "leapfrog step compiled ahead of time (AOTInductor)"
        return ("compiled leapfrog step and trajectory" if kernel.scripted else
                "compiled leapfrog step" if leaf.compiled is not None else "eager leapfrog step") + (
            f" (AOTInductor failed: {unavailable})" if unavailable else "")

    if on_compiled is not None:
        on_compiled(describe())
    total = num_warmup + num_samples
    judgements = sorted(j for j in judgements if j.at < total)
    watch = (method == "nuts" and compiler == "auto" and leaf.compiled is not None and bool(judgements)
             and ahead_of_time_available())
    trees: list[int] = []  # the batch's leaf steps in each transition, until the last judgement

    def after(done: int, t) -> None:
        """After `done` transitions: with ``compiler="auto"``, move the leaf step to AOTInductor once the
        run's tree sizes show the compile pays (`compile.ahead_of_time_pays`); at fixed transitions, so the
        run stays a function of its seed."""
        nonlocal kernel, watch
        if not watch:
            return
        trees.append(int(t.n_steps.max()))  # (the chain with the longest trajectory sets the batch's)
        judgement = next((j for j in judgements if j.at == done), None)
        if judgement is None:
            return
        watch = judgement != judgements[-1]
        recent = trees[judgement.at // 2:judgement.at]
        expected = expected_leaves(sum(recent) / len(recent), done, total, windows[0][1] if windows else 0)
        if not ahead_of_time_pays(leaf.operations, expected / (total - done), total - done, judgement.margin):
            return
        watch = False
        if bar is not None:
            bar.set_postfix_str("compiling the leapfrog step ahead of time (AOTInductor, once per model)")
        examples = [probe_state(z, U, grad, integrator.metric.inverse_mass, probes, max(max_tree_depth, 1))
                    for _ in range(2)]
        if leaf.compile(examples, compiler="inductor"):
            kernel = NUTSKernel(leaf, max_tree_depth, C, D, dtype)
            if on_compiled is not None:
                on_compiled(f"{describe()} from transition {done + 1}")
        elif on_compiled is not None:
            on_compiled(f"{describe()} (AOTInductor would have paid but failed: {leaf.why_not})")
        if bar is not None:
            bar.set_postfix_str("")

    def transition(z, U, grad, eps):
        if method == "nuts":
            return kernel.transition(integrator.metric, z, U, grad, eps, generator)
        return hmc_transition(integrator, z, U, grad, eps, generator, length)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=num_warmup + num_samples, desc=f"{method} ({C} chains batched)")
    for it in range(num_warmup):
        t = transition(z, U, grad, eps)
        z, U, grad = t.z, t.U, t.grad
        after(it + 1, t)
        eps = averaging.update(t.accept_prob)
        if any(start <= it < end for start, end in windows):
            estimator.add(z)
        if it + 1 in window_ends:
            integrator.metric = Metric(estimator.inverse_mass())
            estimator = WindowedCovariance(C, D, full_mass, dtype, reference, pooled.metric)
            eps = averaging.restart(find_reasonable_step_size(integrator, z, U, grad, eps, generator, leaf))
        if bar is not None:
            bar.update()
    if num_warmup > 0:
        eps = averaging.final()

    draws = torch.empty(C, num_samples, D, dtype=dtype)
    names = ["diverging", "energy", "lp", "acceptance_rate", "step_size", "n_steps"]
    if method == "nuts":
        names.append("tree_depth")
    rows: dict[str, list] = {k: [] for k in names}
    for s in range(num_samples):
        t = transition(z, U, grad, eps)
        z, U, grad = t.z, t.U, t.grad
        after(num_warmup + s + 1, t)
        draws[:, s] = z
        rows["diverging"].append(t.diverging)
        rows["energy"].append(t.energy)
        rows["lp"].append(-U)
        rows["acceptance_rate"].append(t.accept_prob)
        rows["step_size"].append(eps.squeeze(-1))
        rows["n_steps"].append(t.n_steps)
        if method == "nuts":
            rows["tree_depth"].append(t.tree_depth)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    stats = {k: torch.stack(v, dim=1).numpy() if v else np.zeros((C, 0)) for k, v in rows.items()}
    stats["diverging"] = stats["diverging"].astype(bool)
    for k in ("energy", "lp", "acceptance_rate", "step_size"):
        stats[k] = stats[k].astype(float)
    return draws, stats
