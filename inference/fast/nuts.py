"""NUTS and HMC that advance every chain at once, as one batch of tensors.

The algorithm is NumPyro's NUTS (Hoffman & Gelman 2014 with Betancourt's multinomial sampling and
generalised U-turn criterion), its iterative tree building in particular, written over a leading chain
dimension:

- a transition resamples the momentum, then doubles the tree in a random direction per chain until the
  tree makes a U-turn, a leaf diverges (energy error above 1000) or the depth reaches `max_tree_depth`;
- a new subtree of 2**depth leaves is built leaf by leaf (NumPyro's `_iterative_build_subtree`): the
  proposal inside it is drawn by progressive uniform (multinomial) sampling, and its own sub-subtrees are
  checked for U-turns against momentum checkpoints whose indices follow from the leaf index's bits;
- the subtree is merged with biased progressive sampling (Stan's: move to it with probability
  min(1, w_new / w_old)) unless it turned or diverged.

All chains walk in lock-step: every chain's tree has the same depth at each doubling and every leaf index
is the same integer for all chains, so which checkpoints a leaf writes and is checked against is one
``(K,)`` mask for the whole batch. A chain whose tree has stopped is masked (its state frozen) while the
others go on; one gradient evaluation serves every chain at each leapfrog step.

Compiled in two layers (see `Leaf` and `TreeBuilder`): the leaf step, the model's gradient and the
U-turn checks included, is one traced graph; the doubling loop around it is TorchScript, so a whole
transition is one call from Python. A transition draws its random numbers (momentum, directions, leaf
and merge uniforms) from its own generator, seeded from the run's, so the compiled and the plain-Python
tree are the same function of that seed.

Warm-up follows Stan: step size by dual averaging (target acceptance `target_accept`, gamma 0.05,
t0 10, kappa 0.75) throughout; a diagonal or dense inverse mass matrix estimated in doubling windows
(initial buffer 75, first window 25, final buffer 50, scaled down for short warm-ups) with Stan's
regularisation, the step size re-initialised after each window. Every chain keeps its own step size and
mass matrix, as if it ran alone.

References: Hoffman & Gelman (2014), Betancourt (2017) "A conceptual introduction to HMC" A.4,
NumPyro `numpyro/infer/hmc_util.py`, Stan `base_nuts.hpp` and `windowed_adaptation.hpp`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .compile import compile_graph, compile_loop
from .graph_passes import checks_as_output, has_checks, record, simplify

MAX_DELTA_ENERGY = 1000.0
ValueAndGrad = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


# ---- kinetic energy ------------------------------------------------------------------------------------
class Metric:
    """Per-chain inverse mass matrix: ``(C, D)`` diagonal or ``(C, D, D)`` dense."""

    def __init__(self, inverse_mass: torch.Tensor):
        self.inverse_mass = inverse_mass
        self.dense = inverse_mass.dim() == 3
        if self.dense:
            mass = torch.cholesky_inverse(torch.linalg.cholesky(inverse_mass))
            self.mass_factor = torch.linalg.cholesky(mass)     # r = L eps has covariance M
        else:
            self.mass_factor = inverse_mass.rsqrt()

    def momentum(self, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        return self.momentum_from(torch.randn(like.shape, generator=generator, dtype=like.dtype))

    def momentum_from(self, eps: torch.Tensor) -> torch.Tensor:
        """r ~ N(0, M) from standard normals `eps`."""
        return _momentum(self.mass_factor, eps)

    def velocity(self, r: torch.Tensor) -> torch.Tensor:
        return _velocity(self.inverse_mass, r)


def _kinetic(r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return 0.5 * (r * v).sum(-1)


def _is_turning(v_left, v_right, r_left, r_right, r_sum, half: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Generalised no-U-turn criterion (Betancourt 2017, A.4.2), per chain; `half` and `zero` are 0-dim
    tensors of the momentum's dtype (see `TreeBuilder`)."""
    rho = r_sum - half * (r_left + r_right)
    return ((v_left * rho).sum(-1) <= zero) | ((v_right * rho).sum(-1) <= zero)


def _leaf_checkpoints(n: int) -> tuple[int, int]:
    """NumPyro's `_leaf_idx_to_ckpt_idxs`: the checkpoint range a leaf is compared against."""
    idx_max = bin(n >> 1).count("1")
    trailing_ones = 0
    while (n >> trailing_ones) & 1:
        trailing_ones += 1
    return idx_max - trailing_ones + 1, idx_max


def _same(a: torch.Tensor, b: torch.Tensor, slack: float = 0.0) -> bool:
    """A compiled output against its eager twin: flags and counts exactly, values to float tolerance
    (widened by `slack`, absolute and relative)."""
    if a.dtype in (torch.bool, torch.long):
        return torch.equal(a, b)
    return torch.allclose(a, b, rtol=1e-4 + slack, atol=1e-5 + slack, equal_nan=True)


# the leaf step's outputs computed from a difference of energies (log weight, proposal's U, acceptance sum)
_ENERGY_OUTPUTS = (4, 6, 11)


def _energy_slack(H0: torch.Tensor) -> float:
    """The rounding error of an energy difference H0 - H1: a few ulps of the energies themselves. With
    U in the thousands (factor analysis on 300 rows), float32 leaves differences of 1e-4 between two
    correct orderings of the same sums, more than `_same`'s default tolerance."""
    finite = H0[torch.isfinite(H0)]
    return 16 * torch.finfo(H0.dtype).eps * float(finite.abs().max()) if finite.numel() else 0.0


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.unsqueeze(-1) if a.dim() > mask.dim() else mask, a, b)


# ---- integrator ------------------------------------------------------------------------------------------
class Integrator:
    """Velocity Verlet over all chains; counts gradient evaluations."""

    def __init__(self, value_and_grad: ValueAndGrad, metric: Metric):
        self.value_and_grad = value_and_grad
        self.metric = metric
        self.evaluations = 0

    def step(self, z, r, grad, step_size):
        r = r - 0.5 * step_size * grad
        z = z + step_size * self.metric.velocity(r)
        U, grad = self.value_and_grad(z)
        self.evaluations += 1
        r = r - 0.5 * step_size * grad
        return z, r, U, grad


@dataclass
class Transition:
    z: torch.Tensor
    U: torch.Tensor
    grad: torch.Tensor
    energy: torch.Tensor        # Hamiltonian at the start of the transition
    accept_prob: torch.Tensor   # mean Metropolis acceptance over the trajectory (what adaptation uses)
    n_steps: torch.Tensor
    diverging: torch.Tensor
    tree_depth: torch.Tensor | None = None


def _momentum(mass_factor: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    if mass_factor.dim() == 3:
        return torch.bmm(mass_factor, eps.unsqueeze(-1)).squeeze(-1)
    return eps * mass_factor


def _velocity(inverse_mass: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    if inverse_mass.dim() == 3:  # bmm: three recorded operations where `@` decomposes into seven
        return torch.bmm(inverse_mass, r.unsqueeze(-1)).squeeze(-1)
    return inverse_mass * r


class Leaf:
    """One NUTS leaf for every chain: a leapfrog step from the subtree's current edge, its energy error,
    the subtree's running sums (multinomial proposal, log weight, momentum sum, acceptance, divergence),
    the U-turn checks of the sub-subtrees ending at this leaf and the leaf's own checkpoint, with chains
    outside ``active`` left unchanged; it returns the new ``active`` (not turned, not diverged).

    The whole step, the model's gradient included, is a pure tensor function, so `compile` records it
    once into a graph (``make_fx``), shrinks it (`graph_passes.simplify`) and compiles that with
    ``torch.jit.trace``: per leaf one call instead of some hundred. The compiled step is used only if it
    reproduces the eager one on probe states.
    """

    def __init__(self, value_and_grad: ValueAndGrad, robust: ValueAndGrad | None = None,
                 is_failure: Callable[[BaseException], bool] | None = None, compiler: str = "auto"):
        self.value_and_grad = value_and_grad
        self.compiler = compiler              # see `compile.COMPILERS`
        self.robust = robust                  # evaluates chain by chain when the batch fails numerically
        self.is_failure = is_failure or (lambda exc: False)
        self.compiled: Callable | None = None
        self.checked = False                  # the compiled step returns a failure flag after its outputs
        self.checkpoints = 0                  # K of the compiled step's (C, K, D) checkpoint inputs
        self.evaluations = 0

    def eager(self, *state):
        return self._step(self.value_and_grad, *state)

    def _step(self, value_and_grad, z, r, g, v, step, inverse_mass, H0, active, log_u, log_w, s_z, s_U, s_g,
              r_sum, div, turning, sum_accept, n_steps, ck_r, ck_v, ck_sum, write, check):
        # the leapfrog step from the subtree's edge
        r_half = r - 0.5 * step * g
        z1 = z + step * _velocity(inverse_mass, r_half)
        U1, g1 = value_and_grad(z1)
        r1 = r_half - 0.5 * step * g1
        v1 = _velocity(inverse_mass, r1)
        # the leaf's log weight, exp(H0 - H1): -inf for chains outside `active`, so that they add nothing below
        leaf_log_w = torch.where(active, torch.nan_to_num(H0 - (U1 + 0.5 * (r1 * v1).sum(-1)), nan=-math.inf,
                                                          posinf=math.inf, neginf=-math.inf), -math.inf)
        # multinomial sampling of the subtree's proposal
        sum_accept = sum_accept + torch.exp(leaf_log_w).clamp(max=1.0)
        n_steps = n_steps + active  # (a bool operand adds as 0 / 1 without a conversion)
        new_log_w = torch.logaddexp(log_w, leaf_log_w)
        take = log_u < leaf_log_w - new_log_w
        col, take_col = active.unsqueeze(-1), take.unsqueeze(-1)
        s_z = torch.where(take_col, z1, s_z)
        s_U = torch.where(take, U1, s_U)
        s_g = torch.where(take_col, g1, s_g)
        log_w = new_log_w
        r_sum = torch.where(col, r_sum + r1, r_sum)
        div = div | (active & (leaf_log_w < -MAX_DELTA_ENERGY))
        # U-turns of the sub-subtrees that end at this leaf: compared with the checkpoints `check` marks
        # (NumPyro's `_is_iterative_turning`, every checkpoint at once), then this leaf's own checkpoint
        # stored where `write` marks (even leaves)
        rho = r_sum.unsqueeze(1) - ck_sum + 0.5 * (ck_r - r1.unsqueeze(1))
        turned = ((ck_v * rho).sum(-1) <= 0) | ((v1.unsqueeze(1) * rho).sum(-1) <= 0)
        turning = turning | (turned & check).any(-1)  # (for chains outside `active` it no longer matters)
        write_col = write.view(1, -1, 1)
        ck_r = torch.where(write_col, r1.unsqueeze(1), ck_r)
        ck_v = torch.where(write_col, v1.unsqueeze(1), ck_v)
        ck_sum = torch.where(write_col, r_sum.unsqueeze(1), ck_sum)
        # chains outside `active` keep their edge's position and momentum (so their leapfrog steps stay where
        # they are); their gradient and velocity are not read again before the tree is done with them
        return (torch.where(col, z1, z), torch.where(col, r1, r), g1, v1, log_w, s_z, s_U, s_g, r_sum, div, turning,
                sum_accept, n_steps, active & ~(turning | div), ck_r, ck_v, ck_sum)

    def __call__(self, *args):
        self.evaluations += 1
        try:
            if self.compiled is not None:
                out = self.compiled(*args)
                if not self.checked:
                    return out
                if not bool(out[-1]):
                    return out[:-1]
                # a linear-algebra check failed inside the compiled step: the eager step raises
            return self.eager(*args)
        except Exception as exc:  # one chain's linear algebra failed: redo this leaf chain by chain
            if self.robust is None or not self.is_failure(exc):
                raise
            return self._step(self.robust, *args)

    def compile(self, examples: list[tuple]) -> bool:
        """Record and compile `eager` at the shapes of ``examples[0]``; keep it only if it matches eager on
        every example (states whose tensors are all distinct: tracing identifies inputs by identity)."""
        try:
            # make_fx wants a plain function of tensors
            def step(z, r, g, v, step, inverse_mass, H0, active, log_u, log_w, s_z, s_U, s_g, r_sum, div,
                     turning, sum_accept, n_steps, ck_r, ck_v, ck_sum, write, check):
                return self.eager(z, r, g, v, step, inverse_mass, H0, active, log_u, log_w, s_z, s_U, s_g,
                                  r_sum, div, turning, sum_accept, n_steps, ck_r, ck_v, ck_sum, write, check)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first = tuple(t.clone() for t in examples[0])
                graph = simplify(record(step, *first))
                checked = has_checks(graph)
                if checked:  # a Cholesky factor's error check, which tracing would drop: as a flag instead
                    graph = checks_as_output(graph)
                    if has_checks(graph):  # checks of another kind: stay eager
                        return False
                compiled = compile_graph(graph, examples[0], self.compiler)
                wants = [self.eager(*example) for example in examples]
                for _ in range(2):  # twice: the profiling executor's first call profiles, the next optimises
                    for example, want in zip(examples, wants):
                        slack = _energy_slack(example[6])
                        got = compiled(*example)
                        if checked and bool(got[-1]):
                            return False
                        if not all(_same(a, b, slack if i in _ENERGY_OUTPUTS else 0.0)
                                   for i, (a, b) in enumerate(zip(got, want))):
                            return False
        except Exception:
            return False
        self.compiled = compiled
        self.checked = checked
        self.checkpoints = int(examples[0][18].shape[1])
        return True

    def scriptable(self) -> torch.nn.Module:
        """The compiled step as `TreeBuilder` calls it inside TorchScript: the traced graph itself, or
        with a failure flag, `CheckedLeaf` around it (which raises where the eager step would)."""
        return CheckedLeaf(self.compiled) if self.checked else self.compiled


class CheckedLeaf(torch.nn.Module):
    """A compiled leaf step whose graph returns a linear-algebra failure flag after its 17 outputs
    (`graph_passes.checks_as_output`): raises as the eager step's check would, so that the scripted tree
    stops and `NUTSKernel.transition` redoes the transition in Python, chain by chain where needed."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def forward(self, z, r, g, v, step, inverse_mass, H0, active, log_u, log_w, s_z, s_U, s_g, r_sum, div,
                turning, sum_accept, n_steps, ck_r, ck_v, ck_sum, write, check):
        out = self.graph(z, r, g, v, step, inverse_mass, H0, active, log_u, log_w, s_z, s_U, s_g, r_sum, div,
                         turning, sum_accept, n_steps, ck_r, ck_v, ck_sum, write, check)
        if bool(out[17]):
            raise RuntimeError("linalg.cholesky: the input is not positive-definite (in the compiled leaf step)")
        return (out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9], out[10], out[11],
                out[12], out[13], out[14], out[15], out[16])


_MASKS: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def _checkpoint_masks(n: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For leaf `n` of a subtree: which of the K checkpoints it overwrites (even leaves: ``idx_max``) and
    which it is checked against for U-turns (odd leaves: ``idx_min..idx_max``), as ``(K,)`` masks."""
    key = (n, K)
    if key not in _MASKS:
        idx_min, idx_max = _leaf_checkpoints(n)
        write, check = torch.zeros(K, dtype=torch.bool), torch.zeros(K, dtype=torch.bool)
        if n % 2 == 0:
            write[idx_max] = True
        else:
            check[idx_min:idx_max + 1] = True
        _MASKS[key] = (write, check)
    return _MASKS[key]


class TreeBuilder(torch.nn.Module):
    """One NUTS transition of every chain: momentum, trajectory and proposal, from a seeded generator.

    Written in the subset of Python that TorchScript compiles: with the compiled leaf step as `leaf`,
    `compile_tree` turns the whole doubling loop (subtrees, merges, U-turn checks) into one TorchScript
    call per transition, so Python's per-operation overhead (about as large as the leaf's own cost on
    a one-parameter model) is paid once per transition instead of some fifty times per leaf. With the
    eager `Leaf` as `leaf` the same code runs as plain Python (the reference path, and the fallback
    when a batch fails numerically). Both draw the same random numbers from `generator` in the same order,
    so from the same seed they give the same transition.
    """

    def __init__(self, leaf, max_tree_depth: int, C: int, D: int, dtype):
        super().__init__()
        self.leaf = leaf
        self.max_tree_depth = max_tree_depth
        # per leaf index of the largest subtree: which checkpoints it writes and is checked against (kept
        # here as lists: a list argument would be converted tensor by tensor on every call)
        write_masks, check_masks = _checkpoint_tables(max_tree_depth)
        self.write_masks: list[torch.Tensor] = list(write_masks.unbind(0))
        self.check_masks: list[torch.Tensor] = list(check_masks.unbind(0))
        self.no_checkpoints = torch.zeros(C, max(max_tree_depth, 1), D, dtype=dtype)
        # the numbers the tree computes with, as 0-dim tensors of its dtype: ATen converts a Python number
        # operand to the tensor's dtype on every call (see `graph_passes._number_operands`)
        self.half = torch.tensor(0.5, dtype=dtype)
        self.zero = torch.tensor(0.0, dtype=dtype)
        self.one = torch.tensor(1.0, dtype=dtype)

    def forward(self, z, U, grad, step_size, inverse_mass, mass_factor, generator: torch.Generator):
        C, D = z.shape[0], z.shape[1]
        dtype = z.dtype
        # the momentum, its Hamiltonian, a direction and a merge uniform per doubling; the leaves' uniforms
        # are drawn subtree by subtree below
        r = _momentum(mass_factor, torch.randn([C, D], generator=generator, dtype=dtype))
        v = _velocity(inverse_mass, r)
        H0 = torch.nan_to_num(U + self.half * (r * v).sum(-1), nan=math.inf, posinf=math.inf, neginf=-math.inf)
        right_draws = torch.rand([self.max_tree_depth, C], generator=generator, dtype=dtype) < self.half
        merge_draws = torch.rand([self.max_tree_depth, C], generator=generator, dtype=dtype)
        # each edge of the tree as one (C, 4, D) tensor: position, momentum, gradient, velocity
        left = torch.stack([z, r, grad, v], 1)
        right_edge = left
        z_prop, U_prop, g_prop = z, U, grad
        log_w = torch.zeros_like(U)
        r_sum = r
        done = torch.zeros(C, dtype=torch.bool)
        diverging = torch.zeros(C, dtype=torch.bool)
        depth = torch.zeros(C, dtype=torch.long)
        sum_accept = torch.zeros_like(U)
        n_steps = torch.zeros(C, dtype=torch.long)
        neg_inf = torch.full_like(U, -math.inf)
        zero_r = torch.zeros_like(r)
        no = torch.zeros(C, dtype=torch.bool)
        signed_steps = torch.where(right_draws.unsqueeze(-1), step_size, -step_size)
        for j in range(self.max_tree_depth):
            active = ~done
            if not bool(active.any()):
                break
            right = right_draws[j]
            edge = torch.where(right.view(C, 1, 1), right_edge, left)
            zc, rc, gc, vc = edge.unbind(1)
            # --- a subtree of 2**j leaves, leaf by leaf ---------------------------------------------------
            leaf_log_u = torch.rand([1 << j, C], generator=generator, dtype=dtype).log()
            s_active, s_log_w, s_r_sum, s_turning, s_diverging = active, neg_inf, zero_r, no, no
            s_z, s_U, s_g = zc, U_prop, gc
            ck_r, ck_v, ck_sum = self.no_checkpoints, self.no_checkpoints, self.no_checkpoints
            step = signed_steps[j]
            for n in range(1 << j):
                (zc, rc, gc, vc, s_log_w, s_z, s_U, s_g, s_r_sum, s_diverging, s_turning, sum_accept, n_steps,
                 s_active, ck_r, ck_v, ck_sum) = self.leaf(
                    zc, rc, gc, vc, step, inverse_mass, H0, s_active, leaf_log_u[n], s_log_w, s_z, s_U,
                    s_g, s_r_sum, s_diverging, s_turning, sum_accept, n_steps, ck_r, ck_v, ck_sum,
                    self.write_masks[n], self.check_masks[n])
                if not bool(s_active.any()):
                    break
            # --- merge the subtree into the tree ------------------------------------------------------------
            # (chains that were done before this subtree took no step in it: their subtree weight is zero,
            # their flags stay false, and their edges, momentum sum and log weight come out unchanged)
            grown = torch.stack([zc, rc, gc, vc], 1)
            right_side = right.view(C, 1, 1)
            right_edge = torch.where(right_side, grown, right_edge)
            left = torch.where(right_side, left, grown)
            r_sum = r_sum + s_r_sum
            stopped = s_turning | s_diverging
            move = torch.minimum(torch.exp(s_log_w - log_w), self.one).masked_fill(stopped, 0.0)
            take = merge_draws[j] < move
            take_col = take.unsqueeze(-1)
            z_prop, U_prop, g_prop = torch.where(take_col, s_z, z_prop), torch.where(take, s_U, U_prop), \
                torch.where(take_col, s_g, g_prop)
            log_w = torch.logaddexp(log_w, s_log_w)
            depth = depth + active.long()
            diverging = diverging | s_diverging
            turning = _is_turning(left.select(1, 3), right_edge.select(1, 3), left.select(1, 1),
                                  right_edge.select(1, 1), r_sum, self.half, self.zero)
            done = done | stopped | turning
        accept = sum_accept / n_steps.clamp(min=1).to(dtype)
        return z_prop, U_prop, g_prop, H0, accept, n_steps, diverging, depth


def _checkpoint_tables(max_tree_depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`_checkpoint_masks` of every leaf of the largest subtree, stacked: ``(2**(depth-1), K)`` each."""
    K = max(max_tree_depth, 1)
    rows = [_checkpoint_masks(n, K) for n in range(1 << max(max_tree_depth - 1, 0))]
    return torch.stack([w for w, _ in rows]), torch.stack([c for _, c in rows])


class NUTSKernel:
    """One NUTS transition of every chain by `TreeBuilder`: TorchScript-compiled when `compile_tree`
    succeeds, plain Python otherwise."""

    def __init__(self, leaf: Leaf, max_tree_depth: int, C: int, D: int, dtype):
        self.leaf, self.max_tree_depth = leaf, max_tree_depth
        self.C, self.D, self.dtype = C, D, dtype
        self.python_tree = TreeBuilder(leaf, max_tree_depth, C, D, dtype)
        self.tree: Callable = self.python_tree
        self.scripted = False
        self.why_not_scripted = ""
        # each transition draws from its own stream, seeded from the run's generator: replaying a
        # transition (in Python, after a numerical failure in the compiled tree) re-seeds it, which costs
        # less than saving and restoring the generator's state every time
        self.stream = torch.Generator()

    def _seed(self, generator: torch.Generator) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=generator))

    def transition(self, metric: Metric, z, U, grad, step_size, generator: torch.Generator) -> Transition:
        """`step_size` is ``(C, 1)``."""
        seed = self._seed(generator)
        inputs = (z, U, grad, step_size, metric.inverse_mass, metric.mass_factor, self.stream.manual_seed(seed))
        try:
            out = self.tree(*inputs)
        except Exception as exc:  # a chain's arithmetic failed inside the compiled tree: redo it in Python,
            if not self.scripted or not self.leaf.is_failure(exc):  # same draws, chain by chain where needed
                raise
            self.stream.manual_seed(seed)
            out = self.python_tree(*inputs)
        return Transition(*out)

    def compile_tree(self, metric: Metric, z, U, grad, step_size, generator: torch.Generator) -> bool:
        """Script `TreeBuilder` around the compiled leaf; keep it only if it reproduces the Python tree on a
        transition from (z, U, grad) with the same random numbers (run three times: the first runs of a
        scripted function profile it, the later ones run what was optimised from the profile). Where that
        transition runs into a numerical failure (which the scripted tree leaves to the Python one), the
        check is redone with the step size halved, up to four times."""
        if self.leaf.compiled is None:
            self.why_not_scripted = "the leaf step is not compiled"
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = compile_loop(TreeBuilder(self.leaf.scriptable(), self.max_tree_depth, self.C, self.D,
                                                    self.dtype), self.leaf.compiler)
                if scripted is None:
                    self.why_not_scripted = "the compiler runs the doubling loop in Python"
                    return False
                for attempt in range(5):
                    try:
                        same = self._check_tree(scripted, metric, z, U, grad, step_size, generator)
                        break
                    except Exception as exc:
                        if attempt == 4 or not self.leaf.is_failure(exc):
                            raise
                        step_size = 0.5 * step_size
        except Exception as exc:
            self.why_not_scripted = f"{type(exc).__name__}: {exc}"
            return False
        if not same:
            return False
        self.tree, self.scripted = scripted, True
        return True

    def _check_tree(self, scripted, metric: Metric, z, U, grad, step_size, generator) -> bool:
        """The same transition three times (the profiling executor optimises after its first runs) against
        one run of the Python tree, from the same seed."""
        seed = self._seed(generator)
        inputs = (z, U, grad, step_size, metric.inverse_mass, metric.mass_factor, self.stream)
        self.stream.manual_seed(seed)
        want = self.python_tree(*inputs)
        for _ in range(3):
            self.stream.manual_seed(seed)
            got = scripted(*inputs)
            for name, a, b in zip(("z", "U", "grad", "energy", "accept_prob", "n_steps", "diverging", "depth"),
                                  got, want):
                if not _same(a, b):
                    self.why_not_scripted = f"the scripted tree's {name} differs from the Python tree's"
                    return False
        return True


def hmc_transition(integrator: Integrator, z, U, grad, step_size, generator: torch.Generator,
                   trajectory_length: float = 2 * math.pi) -> Transition:
    """One HMC transition of every chain: ``max(1, int(L / step_size))`` leapfrog steps, then a Metropolis
    accept/reject of the end point.

    The length L is drawn per chain and transition, uniformly in [0.5, 1.5] x `trajectory_length`,
    independently of the state (so the kernel stays reversible). A fixed length resonates: once the mass
    matrix has whitened a near-Gaussian posterior, a trajectory of 2 pi is one full period of the flow and
    brings every chain back where it started (seen on the coin as R-hat 1.07 with a fixed length).
    """
    metric = integrator.metric
    C = z.shape[0]
    r = metric.momentum(generator, z)
    H0 = U + _kinetic(r, metric.velocity(r))
    jitter = 0.5 + torch.rand(C, generator=generator, dtype=U.dtype)
    num_steps = (trajectory_length * jitter / step_size.squeeze(-1)).floor().clamp(min=1, max=10_000).long()
    zc, rc, Uc, gc = z, r, U, grad
    for k in range(int(num_steps.max())):
        moving = k < num_steps
        z1, r1, U1, g1 = integrator.step(zc, rc, gc, step_size)
        zc, rc, Uc, gc = _where(moving, z1, zc), _where(moving, r1, rc), torch.where(moving, U1, Uc), \
            _where(moving, g1, gc)
    dH = Uc + _kinetic(rc, metric.velocity(rc)) - H0
    dH = torch.where(torch.isnan(dH), torch.full_like(dH, math.inf), dH)
    accept_prob = torch.exp(-dH).clamp(max=1.0)
    accept = torch.rand(C, generator=generator, dtype=U.dtype) < accept_prob
    return Transition(_where(accept, zc, z), torch.where(accept, Uc, U), _where(accept, gc, grad), H0,
                      accept_prob, num_steps, dH > MAX_DELTA_ENERGY)


# ---- adaptation ------------------------------------------------------------------------------------------
def find_reasonable_step_size(integrator: Integrator, z, U, grad, step_size, generator,
                              leaf: Leaf | None = None) -> torch.Tensor:
    """Stan's heuristic, per chain: double or halve the step until one leapfrog step's acceptance
    crosses 0.8. `step_size` is ``(C, 1)``. With a compiled NUTS `leaf` the leapfrog steps run through it
    (its log weight from an empty subtree is the step's log acceptance) instead of the eager gradient."""
    threshold = math.log(0.8)
    metric = integrator.metric
    r = metric.momentum(generator, z)
    v = metric.velocity(r)
    H0 = U + _kinetic(r, v)
    if leaf is not None and leaf.compiled is not None:
        C, D = z.shape
        K = leaf.checkpoints
        no, none = torch.zeros(C, dtype=torch.bool), torch.zeros(C, K, D, dtype=z.dtype)
        empty = (torch.full_like(U, -math.inf), z, U, grad, torch.zeros_like(r), no, no, torch.zeros_like(U),
                 torch.zeros(C, dtype=torch.long), none, none, none, torch.zeros(K, dtype=torch.bool),
                 torch.zeros(K, dtype=torch.bool))
        every = torch.ones(C, dtype=torch.bool)
        log_u = torch.zeros_like(U)
        H0 = torch.nan_to_num(H0, nan=math.inf, posinf=math.inf, neginf=-math.inf)

        def log_accept(eps):
            return leaf(z, r, grad, v, eps, metric.inverse_mass, H0, every, log_u, *empty)[4]
    else:
        def log_accept(eps):
            _, r1, U1, _ = integrator.step(z, r, grad, eps)
            delta = H0 - (U1 + _kinetic(r1, metric.velocity(r1)))
            return torch.where(torch.isnan(delta), torch.full_like(delta, -math.inf), delta)

    direction = torch.where(log_accept(step_size) > threshold, 1.0, -1.0).to(z.dtype)
    searching = torch.ones(z.shape[0], dtype=torch.bool)
    for _ in range(60):
        candidate = step_size * torch.pow(2.0, direction).unsqueeze(-1)
        step_size = _where(searching, candidate, step_size)
        new_direction = torch.where(log_accept(step_size) > threshold, 1.0, -1.0).to(z.dtype)
        searching = searching & (new_direction == direction)
        if not bool(searching.any()):
            break
    return step_size


class DualAveraging:
    """Nesterov dual averaging of log step size (Hoffman & Gelman 2014, Stan's constants), per chain."""

    def __init__(self, step_size: torch.Tensor, target: float, gamma=0.05, t0=10.0, kappa=0.75):
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.restart(step_size)

    def restart(self, step_size: torch.Tensor) -> None:
        self.mu = torch.log(10 * step_size)
        self.t = 0
        self.h_bar = torch.zeros_like(step_size)
        self.log_bar = torch.zeros_like(step_size)

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """Feed one transition's mean acceptance ``(C,)``; returns the next step size ``(C, 1)``."""
        self.t += 1
        eta = 1.0 / (self.t + self.t0)
        accept = torch.nan_to_num(accept_prob, nan=0.0).unsqueeze(-1)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - accept)
        log_step = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        weight = self.t ** (-self.kappa)
        self.log_bar = weight * log_step + (1 - weight) * self.log_bar
        return torch.exp(log_step)

    def final(self) -> torch.Tensor:
        return torch.exp(self.log_bar)


class WindowedCovariance:
    """Welford running mean and (co)variance of the draws in one adaptation window, per chain.

    `reference` ``(C, D)`` holds the variances the regularisation is scaled by: ones gives Stan's rule
    exactly; the warm start passes the Laplace approximation's variances, so that a parameter whose
    posterior sd is 0.001 is not given a metric floor of variance 1e-5, ten times its own (which forced a
    step size three times too small on the sblrc regression)."""

    def __init__(self, C: int, D: int, dense: bool, dtype, reference: torch.Tensor | None = None):
        self.dense, self.n = dense, 0
        self.mean = torch.zeros(C, D, dtype=torch.float64)
        self.m2 = torch.zeros((C, D, D) if dense else (C, D), dtype=torch.float64)
        self.dtype = dtype
        self.reference = (torch.ones(C, D, dtype=torch.float64) if reference is None
                          else reference.to(torch.float64))

    def add(self, z: torch.Tensor) -> None:
        z = z.to(torch.float64)
        self.n += 1
        delta = z - self.mean
        self.mean = self.mean + delta / self.n
        if self.dense:
            self.m2 = self.m2 + delta.unsqueeze(-1) * (z - self.mean).unsqueeze(-2)
        else:
            self.m2 = self.m2 + delta * (z - self.mean)

    def inverse_mass(self) -> torch.Tensor:
        """Stan's regularised estimate, (n / (n + 5)) cov + 1e-3 (5 / (n + 5)) R, with R = diag(reference)
        (the identity in Stan)."""
        n = self.n
        cov = self.m2 / max(n - 1, 1)
        shrink = 1e-3 * 5.0 / (n + 5.0) * self.reference
        if self.dense:
            cov = n / (n + 5.0) * cov + torch.diag_embed(shrink)
            cov = 0.5 * (cov + cov.transpose(-1, -2))
        else:
            cov = n / (n + 5.0) * cov + shrink
        return cov.to(self.dtype)


def adaptation_windows(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50,
                       base_window: int = 25) -> list[tuple[int, int]]:
    """Stan's mass-matrix windows as (start, end) warm-up iteration ranges; none below 20 iterations."""
    if num_warmup < 20:
        return []
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - init_buffer - term_buffer
    windows, start, size, last = [], init_buffer, base_window, num_warmup - term_buffer
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


def _probe_state(z, U, grad, inverse_mass, generator, K: int) -> tuple:
    """A random leaf-step input near (z, U, grad), every tensor distinct, to check the compiled leaf."""
    C, D = z.shape
    dtype = z.dtype

    def noise(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype)

    r = noise(C, D)
    active = torch.rand(C, generator=generator) < 0.75
    active[0] = True

    def flags(*shape):
        return torch.rand(shape, generator=generator) < 0.3

    return (z + 0.01 * noise(C, D), r, grad + 0.01 * noise(C, D), _velocity(inverse_mass, r),
            0.01 * torch.rand(C, 1, generator=generator, dtype=dtype) + 1e-3, inverse_mass.clone(),
            U + noise(C).abs(), active, torch.rand(C, generator=generator, dtype=dtype).log(), noise(C),
            z + noise(C, D), U + noise(C), grad + noise(C, D), noise(C, D), flags(C), flags(C),
            torch.rand(C, generator=generator, dtype=dtype), torch.randint(0, 5, (C,), generator=generator),
            noise(C, K, D), noise(C, K, D), noise(C, K, D), flags(K), flags(K))


# ---- the run ---------------------------------------------------------------------------------------------
def run_chains(value_and_grad: ValueAndGrad, z0: torch.Tensor, *, method: str = "nuts", num_samples: int = 1000,
               num_warmup: int = 1000, target_accept: float = 0.8, max_tree_depth: int = 10,
               full_mass: bool = False, step_size: float = 1.0, trajectory_length: float | None = None,
               generator: torch.Generator, progress: bool = False,
               traceable: ValueAndGrad | None = None,
               is_failure: Callable[[BaseException], bool] | None = None,
               on_compiled: Callable[[str], None] | None = None,
               initial_inverse_mass: torch.Tensor | None = None,
               compiler: str = "auto") -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Warm up and sample every chain of ``z0`` ``(C, D)`` together.

    `value_and_grad` gives (U, dU/dz) for a ``(C, D)`` batch. `traceable`, if given, is a version of it
    that ``make_fx`` can record (plain tensor code, no compiled parts): the NUTS leaf step is then
    compiled around it, and the doubling loop around that (``on_compiled`` is told which parts are
    compiled). When a leaf step raises an exception that ``is_failure`` accepts (a numerical failure of
    one chain), the step is redone with `value_and_grad`, which must then evaluate the chains one by one
    (see `BatchedPotential.per_chain`). `compiler` names the implementation of `compile` that compiles.

    `initial_inverse_mass` (``(C, D)``, or ``(C, D, D)`` with `full_mass`) is the metric warm-up starts
    from instead of the identity (see `warm_start`).

    Returns the draws ``(C, num_samples, D)`` in unconstrained space and the per-draw statistics
    (diverging, energy, lp, acceptance_rate, step_size, n_steps, and tree_depth for NUTS), each
    ``(C, num_samples)``.
    """
    C, D = z0.shape
    dtype = z0.dtype
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
    if method == "nuts" and traceable is not None:
        leaf.compile([_probe_state(z, U, grad, inverse_mass, generator, max(max_tree_depth, 1))
                      for _ in range(2)])
    eps = torch.full((C, 1), float(step_size), dtype=dtype)
    if num_warmup > 0:
        eps = find_reasonable_step_size(integrator, z, U, grad, eps, generator, leaf)
    averaging = DualAveraging(eps, target_accept)
    windows = adaptation_windows(num_warmup)
    window_ends = {end: i for i, (_, end) in enumerate(windows)}
    reference = None  # the scale of the metric's regularisation: the warm start's variances, if given
    if initial_inverse_mass is not None:
        reference = torch.diagonal(inverse_mass, dim1=-2, dim2=-1) if full_mass else inverse_mass
    estimator = WindowedCovariance(C, D, full_mass, dtype, reference)
    length = trajectory_length if trajectory_length is not None else 2 * math.pi

    kernel = NUTSKernel(leaf, max_tree_depth, C, D, dtype)
    if method == "nuts" and leaf.compiled is not None:
        kernel.compile_tree(integrator.metric, z, U, grad, eps, generator)
    if on_compiled is not None:
        on_compiled("compiled leapfrog step and trajectory" if kernel.scripted else
                    "compiled leapfrog step" if leaf.compiled is not None else "eager leapfrog step")

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
        eps = averaging.update(t.accept_prob)
        if any(start <= it < end for start, end in windows):
            estimator.add(z)
        if it + 1 in window_ends:
            integrator.metric = Metric(estimator.inverse_mass())
            estimator = WindowedCovariance(C, D, full_mass, dtype, reference)
            eps = find_reasonable_step_size(integrator, z, U, grad, eps, generator, leaf)
            averaging.restart(eps)
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
