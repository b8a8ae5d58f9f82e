"""NUTS and HMC transitions that advance every chain at once, as one batch of tensors.

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

Compiled in two layers (see `Leaf` and `TreeBuilder`): the leaf step (`leaf_step`, on the named state of
`state`), the model's gradient and the U-turn checks included, is one recorded graph of flat tensors,
called through `CompiledLeaf`; the doubling loop around it is TorchScript, so a whole transition is one
call from Python. A transition draws its random numbers (momentum, directions, leaf and merge uniforms)
from its own generator, seeded from the run's, so the compiled and the plain-Python tree are the same
function of that seed.

HMC (`hmc_transition`) takes a jittered number of leapfrog steps with `Integrator` and a Metropolis
accept/reject of the end point.

References: Hoffman & Gelman (2014), Betancourt (2017) "A conceptual introduction to HMC" A.4,
NumPyro `numpyro/infer/hmc_util.py`, Stan `base_nuts.hpp`.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.fx as fx

from ppl_models.errors import one_line

from .compile import Packaged, compile_graph, compile_loop
from .graph_passes import checks_as_output, has_checks, record, simplify
from .state import LeafInput, LeafState, SubtreeConstants, Transition

__all__ = ["MAX_DELTA_ENERGY", "ValueAndGrad", "Metric", "Integrator", "Leaf", "CompiledLeaf", "TreeBuilder",
           "FlatTreeBuilder", "NUTSKernel", "hmc_transition", "leaf_step", "leaf_checkpoints", "momentum", "velocity",
           "kinetic_energy", "where_chains", "compilable"]

MAX_DELTA_ENERGY = 1000.0
ValueAndGrad = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


# ---- kinetic energy ------------------------------------------------------------------------------------
def momentum(mass_factor: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """r ~ N(0, M) from standard normals `eps` ``(C, D)``, with `mass_factor` a Cholesky factor of M
    ``(C, D, D)`` or the square root of a diagonal M ``(C, D)``."""
    if mass_factor.dim() == 3:
        return torch.bmm(mass_factor, eps.unsqueeze(-1)).squeeze(-1)
    return eps * mass_factor


def velocity(inverse_mass: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """dz/dt = M^-1 r per chain, with `inverse_mass` ``(C, D, D)`` or its diagonal ``(C, D)``."""
    if inverse_mass.dim() == 3:  # bmm: three recorded operations where `@` decomposes into seven
        return torch.bmm(inverse_mass, r.unsqueeze(-1)).squeeze(-1)
    return inverse_mass * r


def kinetic_energy(r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """r^T M^-1 r / 2 per chain, from the momentum and its velocity."""
    return 0.5 * (r * v).sum(-1)


def where_chains(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.where`` with a per-chain ``(C,)`` mask, broadcast over the rows of ``(C, D)`` operands."""
    return torch.where(mask.unsqueeze(-1) if a.dim() > mask.dim() else mask, a, b)


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
        """A fresh momentum for every chain, shaped as `like`."""
        return self.momentum_from(torch.randn(like.shape, generator=generator, dtype=like.dtype))

    def momentum_from(self, eps: torch.Tensor) -> torch.Tensor:
        """r ~ N(0, M) from standard normals `eps`."""
        return momentum(self.mass_factor, eps)

    def velocity(self, r: torch.Tensor) -> torch.Tensor:
        return velocity(self.inverse_mass, r)


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


# ---- the leaf step ---------------------------------------------------------------------------------------
def leaf_step(value_and_grad: ValueAndGrad, state: LeafState, subtree: SubtreeConstants,
              leaf: LeafInput) -> LeafState:
    """One NUTS leaf for every chain: a leapfrog step from the subtree's edge, its energy error, the
    subtree's running sums (multinomial proposal, log weight, momentum sum, acceptance, divergence), the
    U-turn checks of the sub-subtrees ending at this leaf and the leaf's own checkpoint, with chains
    outside ``state.active`` left unchanged; the new state's ``active`` drops chains that turned or
    diverged. A pure tensor function of its inputs, `value_and_grad` included."""
    active = state.active
    # the leapfrog step from the subtree's edge
    r_half = state.r - 0.5 * subtree.step * state.g
    z1 = state.z + subtree.step * velocity(subtree.inverse_mass, r_half)
    U1, g1 = value_and_grad(z1)
    r1 = r_half - 0.5 * subtree.step * g1
    v1 = velocity(subtree.inverse_mass, r1)
    # the leaf's log weight, exp(H0 - H1): -inf for chains outside `active`, so that they add nothing below
    leaf_log_w = torch.where(active, torch.nan_to_num(subtree.H0 - (U1 + 0.5 * (r1 * v1).sum(-1)), nan=-math.inf,
                                                      posinf=math.inf, neginf=-math.inf), -math.inf)
    # multinomial sampling of the subtree's proposal
    sum_accept = state.sum_accept + torch.exp(leaf_log_w).clamp(max=1.0)
    n_steps = state.n_steps + active  # (a bool operand adds as 0 / 1 without a conversion)
    log_w = torch.logaddexp(state.log_w, leaf_log_w)
    take = leaf.log_u < leaf_log_w - log_w
    col, take_col = active.unsqueeze(-1), take.unsqueeze(-1)
    s_z = torch.where(take_col, z1, state.s_z)
    s_U = torch.where(take, U1, state.s_U)
    s_g = torch.where(take_col, g1, state.s_g)
    r_sum = torch.where(col, state.r_sum + r1, state.r_sum)
    diverging = state.diverging | (active & (leaf_log_w < -MAX_DELTA_ENERGY))
    # U-turns of the sub-subtrees that end at this leaf: compared with the checkpoints `leaf.check` marks
    # (NumPyro's `_is_iterative_turning`, every checkpoint at once), then this leaf's own checkpoint
    # stored where `leaf.write` marks (even leaves)
    rho = r_sum.unsqueeze(1) - state.ck_sum + 0.5 * (state.ck_r - r1.unsqueeze(1))
    turned = ((state.ck_v * rho).sum(-1) <= 0) | ((v1.unsqueeze(1) * rho).sum(-1) <= 0)
    turning = state.turning | (turned & leaf.check).any(-1)  # (for chains outside `active` it no longer matters)
    write_col = leaf.write.view(1, -1, 1)
    ck_r = torch.where(write_col, r1.unsqueeze(1), state.ck_r)
    ck_v = torch.where(write_col, v1.unsqueeze(1), state.ck_v)
    ck_sum = torch.where(write_col, r_sum.unsqueeze(1), state.ck_sum)
    # chains outside `active` keep their edge's position and momentum (so their leapfrog steps stay where
    # they are); their gradient and velocity are not read again before the tree is done with them
    return LeafState(z=torch.where(col, z1, state.z), r=torch.where(col, r1, state.r), g=g1, v=v1, log_w=log_w,
                     s_z=s_z, s_U=s_U, s_g=s_g, r_sum=r_sum, diverging=diverging, turning=turning,
                     sum_accept=sum_accept, n_steps=n_steps, active=active & ~(turning | diverging),
                     ck_r=ck_r, ck_v=ck_v, ck_sum=ck_sum)


_ACTIVE = LeafState._fields.index("active")
# the leaf state's fields computed from a difference of energies
_ENERGY_FIELDS = ("log_w", "s_U", "sum_accept")


def _same(a: torch.Tensor, b: torch.Tensor, slack: float = 0.0) -> bool:
    """A compiled output against its eager twin: flags and counts exactly; values with the same NaNs and
    infinities, and the finite ones to float tolerance (widened by `slack`, absolute and relative) relative
    to the largest magnitude in their row. A compiler that fuses reorders sums: a gradient component that
    is a difference of large terms then moves by the rounding of those terms, not of itself (the factor
    analysis's loadings under AOTInductor: 1e-3 on components of a gradient whose largest is 1e2)."""
    if a.dtype in (torch.bool, torch.long):
        return torch.equal(a, b)
    if a.shape != b.shape or not torch.equal(torch.isnan(a), torch.isnan(b)) or \
            not torch.equal(a.masked_fill(torch.isfinite(a), 0), b.masked_fill(torch.isfinite(b), 0)):
        return False
    finite = torch.isfinite(b)
    a, b = a.masked_fill(~finite, 0), b.masked_fill(~finite, 0)
    scale = b.abs().amax(-1, keepdim=True) if b.dim() > 1 else b.abs()
    return bool(((a - b).abs() <= (1e-5 + slack) + (1e-4 + slack) * scale).all())


def _energy_slack(H0: torch.Tensor) -> float:
    """The rounding error of an energy difference H0 - H1: a few ulps of the energies themselves. With
    U in the thousands (factor analysis on 300 rows), float32 leaves differences of 1e-4 between two
    correct orderings of the same sums, more than `_same`'s default tolerance."""
    finite = H0[torch.isfinite(H0)]
    return 16 * torch.finfo(H0.dtype).eps * float(finite.abs().max()) if finite.numel() else 0.0


class CompiledLeaf(torch.nn.Module):
    """The compiled leaf step with the named state around it: the one place where the named tuples meet
    the recorded graph's flat tensors (inputs: the fields of `LeafState`, `SubtreeConstants` and
    `LeafInput` in order; outputs: those of `LeafState`, then, if `checked`, a linear-algebra failure flag
    from `graph_passes.checks_as_output`).

    `run` returns the new state and that flag (false without checks), for `Leaf` to redo a failed step
    eagerly; calling the module raises where the flag is set, as the eager step's check would, so that
    the scripted tree stops and `NUTSKernel.transition` redoes the transition in Python, chain by chain
    where needed. Written in TorchScript's subset of Python: `TreeBuilder` calls it when scripted."""

    __constants__ = ["checked"]  # (TorchScript drops the branches of the other case)

    def __init__(self, graph: Callable, checked: bool):
        super().__init__()
        self.graph = graph
        self.checked = checked
        self.register_buffer("not_failed", torch.zeros((), dtype=torch.bool))

    @staticmethod
    def flatten(state: LeafState, subtree: SubtreeConstants, leaf: LeafInput) -> tuple:
        """The graph's inputs, in the order `run` passes them."""
        return (*state, *subtree, *leaf)

    @staticmethod
    def flat_function(step: Callable[[LeafState, SubtreeConstants, LeafInput], LeafState]) -> Callable:
        """`step` as the function of flat tensors that ``make_fx`` records (inputs as `flatten` orders
        them, outputs the new state's fields)."""
        n, m = len(LeafState._fields), len(SubtreeConstants._fields)

        def flat_step(*tensors):
            state = LeafState(*tensors[:n])
            subtree = SubtreeConstants(*tensors[n:n + m])
            leaf = LeafInput(*tensors[n + m:])
            return tuple(step(state, subtree, leaf))

        return flat_step

    def run(self, state: LeafState, subtree: SubtreeConstants, leaf: LeafInput) -> tuple[LeafState, torch.Tensor]:
        out = self.graph(state.z, state.r, state.g, state.v, state.log_w, state.s_z, state.s_U, state.s_g,
                         state.r_sum, state.diverging, state.turning, state.sum_accept, state.n_steps, state.active,
                         state.ck_r, state.ck_v, state.ck_sum, subtree.step, subtree.inverse_mass, subtree.H0,
                         leaf.log_u, leaf.write, leaf.check)
        new = LeafState(out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9], out[10],
                        out[11], out[12], out[13], out[14], out[15], out[16])
        return new, (out[-1] if self.checked else self.not_failed)

    def forward(self, state: LeafState, subtree: SubtreeConstants, leaf: LeafInput) -> LeafState:
        new, failed = self.run(state, subtree, leaf)
        if self.checked and bool(failed):
            raise RuntimeError("linalg.cholesky: the input is not positive-definite (in the compiled leaf step)")
        return new


class Leaf:
    """`leaf_step` on the model's gradient, compiled where that reproduces the eager step, redone chain
    by chain where the batch fails numerically.

    The whole step, the model's gradient included, is a pure tensor function, so `compile` records it
    once into a graph (``make_fx``), shrinks it (`graph_passes.simplify`) and compiles that
    (`compile.compile_graph`): per leaf one call instead of some hundred. The compiled step
    (`CompiledLeaf`) is used only if it reproduces the eager one on probe states.
    """

    def __init__(self, value_and_grad: ValueAndGrad, robust: ValueAndGrad | None = None,
                 is_failure: Callable[[BaseException], bool] | None = None, compiler: str = "auto"):
        self.value_and_grad = value_and_grad
        self.compiler = compiler              # see `compile.COMPILERS`
        self.robust = robust                  # evaluates chain by chain when the batch fails numerically
        self.is_failure = is_failure or (lambda exc: False)
        self.compiled: CompiledLeaf | None = None
        self.checked = False                  # the compiled step returns a failure flag after its outputs
        self.checkpoints = 0                  # K of the compiled step's (C, K, D) checkpoints
        self.operations = 0                   # ATen operations in the compiled step's graph
        self.why_not = ""                     # why the last `compile` kept nothing, one line
        self.evaluations = 0

    def eager(self, state: LeafState, subtree: SubtreeConstants, leaf: LeafInput) -> LeafState:
        return leaf_step(self.value_and_grad, state, subtree, leaf)

    def __call__(self, state: LeafState, subtree: SubtreeConstants, leaf: LeafInput) -> LeafState:
        self.evaluations += 1
        try:
            if self.compiled is not None:
                new, failed = self.compiled.run(state, subtree, leaf)
                if not self.checked or not bool(failed):
                    return new
                # a linear-algebra check failed inside the compiled step: the eager step raises
            return self.eager(state, subtree, leaf)
        except Exception as exc:  # one chain's linear algebra failed: redo this leaf chain by chain
            if self.robust is None or not self.is_failure(exc):
                raise
            return leaf_step(self.robust, state, subtree, leaf)

    def flat_runner(self) -> Callable[[list], list] | None:
        """The compiled step as a function of one flat list of contiguous tensors (inputs in
        `CompiledLeaf.flatten`'s order, outputs as `CompiledLeaf` returns them), where its compiler offers
        one (`compile.Packaged`)."""
        graph = getattr(self.compiled, "graph", None)
        return graph.loader.run if isinstance(graph, Packaged) and graph.loader is not None else None

    def grow(self, state: LeafState, subtree: SubtreeConstants, log_u: torch.Tensor, writes: list[torch.Tensor],
             checks: list[torch.Tensor], leaves: int) -> LeafState:
        """`TreeBuilder.grow` on the flat runner: the state stays a list of tensors from leaf to leaf, and
        becomes a `LeafState` only where a leaf is redone eagerly (a failed check) and at the end."""
        run = self.flat_runner()
        n_state = len(LeafState._fields)
        uniforms = log_u.unbind(0)  # (one call for the subtree's rows, each contiguous)
        flat = [t.contiguous() for t in (*state, *subtree)] + [uniforms[0], writes[0], checks[0]]
        for n in range(leaves):
            flat[-3], flat[-2], flat[-1] = uniforms[n], writes[n], checks[n]
            try:
                out = run(flat)
                failed = self.checked and bool(out[-1])
            except Exception:  # (`__call__` below tells a numerical failure from a defect)
                failed = True
            if failed:  # a linear-algebra check failed or raised: this leaf as `__call__` does it
                redone = self(LeafState(*flat[:n_state]), subtree, LeafInput(log_u[n], writes[n], checks[n]))
                flat[:n_state] = [t.contiguous() for t in redone]
            else:
                self.evaluations += 1
                flat[:n_state] = out[:n_state]
            if not bool(flat[_ACTIVE].any()):
                break
        return LeafState(*flat[:n_state])

    def record(self, example: tuple[LeafState, SubtreeConstants, LeafInput]) -> fx.GraphModule:
        """`eager` recorded at the shapes of `example` and simplified: a graph of ATen operations whose inputs
        are `CompiledLeaf.flatten`'s tensors (`compilable` makes it what `compile` hands the compiler)."""
        first = tuple(t.clone() for t in CompiledLeaf.flatten(*example))
        return simplify(record(CompiledLeaf.flat_function(self.eager), *first))

    def compile(self, examples: list[tuple[LeafState, SubtreeConstants, LeafInput]],
                compiler: str | None = None) -> bool:
        """Record and compile `eager` at the shapes of ``examples[0]`` (with `compiler`, by default the
        leaf's own); keep it only if it matches eager on every example (states whose tensors are all
        distinct: tracing identifies inputs by identity). Where nothing is kept, `why_not` says why."""
        compiler = self.compiler if compiler is None else compiler
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = self.record(examples[0])
                operations = sum(node.op == "call_function" for node in graph.graph.nodes)
                found = compilable(graph)
                if found is None:  # checks of another kind: stay eager
                    self.why_not = "the step checks its arithmetic in a way the compiled graph cannot"
                    return False
                graph, checked = found
                compiled = CompiledLeaf(compile_graph(graph, CompiledLeaf.flatten(*examples[0]), compiler), checked)
                wants = [self.eager(*example) for example in examples]
                for _ in range(2):  # twice: the profiling executor's first call profiles, the next optimises
                    for example, want in zip(examples, wants):
                        slack = _energy_slack(example[1].H0)
                        got, failed = compiled.run(*example)
                        if (checked and bool(failed)) or not all(
                                _same(getattr(got, name), getattr(want, name), slack if name in _ENERGY_FIELDS else 0.0)
                                for name in LeafState._fields):
                            self.why_not = "the compiled step does not reproduce the eager one"
                            return False
        except Exception as exc:
            self.why_not = one_line(exc, limit=120)
            return False
        self.compiled = compiled
        self.compiler = compiler
        self.checked = checked
        self.operations = operations
        self.checkpoints = int(examples[0][0].ck_r.shape[1])
        return True


def compilable(graph: fx.GraphModule) -> tuple[fx.GraphModule, bool] | None:
    """A recorded leaf step as the compiler takes it, and whether it carries a check flag: a Cholesky
    factor's error check, which tracing would drop, becomes a flag output (`checks_as_output`). None when
    the graph checks its arithmetic in another way, which a compiled graph cannot (the step stays eager)."""
    if not has_checks(graph):
        return graph, False
    graph = checks_as_output(graph)
    return None if has_checks(graph) else (graph, True)


# ---- the tree --------------------------------------------------------------------------------------------
def _is_turning(v_left, v_right, r_left, r_right, r_sum, half: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Generalised no-U-turn criterion (Betancourt 2017, A.4.2), per chain; `half` and `zero` are 0-dim
    tensors of the momentum's dtype (see `TreeBuilder`)."""
    rho = r_sum - half * (r_left + r_right)
    return ((v_left * rho).sum(-1) <= zero) | ((v_right * rho).sum(-1) <= zero)


def leaf_checkpoints(n: int) -> tuple[int, int]:
    """NumPyro's `_leaf_idx_to_ckpt_idxs`: the checkpoint range leaf `n` of a subtree is compared against."""
    idx_max = bin(n >> 1).count("1")
    trailing_ones = 0
    while (n >> trailing_ones) & 1:
        trailing_ones += 1
    return idx_max - trailing_ones + 1, idx_max


_MASKS: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def _checkpoint_masks(n: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For leaf `n` of a subtree: which of the K checkpoints it overwrites (even leaves: ``idx_max``) and
    which it is checked against for U-turns (odd leaves: ``idx_min..idx_max``), as ``(K,)`` masks."""
    key = (n, K)
    if key not in _MASKS:
        idx_min, idx_max = leaf_checkpoints(n)
        write, check = torch.zeros(K, dtype=torch.bool), torch.zeros(K, dtype=torch.bool)
        if n % 2 == 0:
            write[idx_max] = True
        else:
            check[idx_min:idx_max + 1] = True
        _MASKS[key] = (write, check)
    return _MASKS[key]


def _checkpoint_tables(max_tree_depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`_checkpoint_masks` of every leaf of the largest subtree, stacked: ``(2**(depth-1), K)`` each."""
    K = max(max_tree_depth, 1)
    rows = [_checkpoint_masks(n, K) for n in range(1 << max(max_tree_depth - 1, 0))]
    return torch.stack([w for w, _ in rows]), torch.stack([c for _, c in rows])


class TreeBuilder(torch.nn.Module):
    """One NUTS transition of every chain: momentum, trajectory and proposal, from a seeded generator.

    Written in the subset of Python that TorchScript compiles: with the compiled leaf step (`CompiledLeaf`)
    as `leaf`, `NUTSKernel.compile_tree` turns the whole doubling loop (subtrees, merges, U-turn checks)
    into one TorchScript call per transition, so Python's per-operation overhead (about as large as the
    leaf's own cost on a one-parameter model) is paid once per transition instead of some fifty times per
    leaf. With a `Leaf` as `leaf` the same code runs as plain Python (the reference path, and the fallback
    when a batch fails numerically). Both draw the same random numbers from `generator` in the same order,
    so from the same seed they give the same transition. It returns the fields of a `Transition` in order,
    as a plain tuple: TorchScript hands a named tuple back to Python by creating its class anew on every
    call, which costs more than a leaf step.
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
        r = momentum(mass_factor, torch.randn([C, D], generator=generator, dtype=dtype))
        v = velocity(inverse_mass, r)
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
            subtree = SubtreeConstants(step=signed_steps[j], inverse_mass=inverse_mass, H0=H0)
            state = LeafState(z=zc, r=rc, g=gc, v=vc, log_w=neg_inf, s_z=zc, s_U=U_prop, s_g=gc, r_sum=zero_r,
                              diverging=no, turning=no, sum_accept=sum_accept, n_steps=n_steps, active=active,
                              ck_r=self.no_checkpoints, ck_v=self.no_checkpoints, ck_sum=self.no_checkpoints)
            state = self.grow(state, subtree, leaf_log_u, 1 << j)
            sum_accept, n_steps = state.sum_accept, state.n_steps
            # --- merge the subtree into the tree ------------------------------------------------------------
            # (chains that were done before this subtree took no step in it: their subtree weight is zero,
            # their flags stay false, and their edges, momentum sum and log weight come out unchanged)
            grown = torch.stack([state.z, state.r, state.g, state.v], 1)
            right_side = right.view(C, 1, 1)
            right_edge = torch.where(right_side, grown, right_edge)
            left = torch.where(right_side, left, grown)
            r_sum = r_sum + state.r_sum
            stopped = state.turning | state.diverging
            move = torch.minimum(torch.exp(state.log_w - log_w), self.one).masked_fill(stopped, 0.0)
            take = merge_draws[j] < move
            take_col = take.unsqueeze(-1)
            z_prop, U_prop, g_prop = torch.where(take_col, state.s_z, z_prop), torch.where(take, state.s_U, U_prop), \
                torch.where(take_col, state.s_g, g_prop)
            log_w = torch.logaddexp(log_w, state.log_w)
            depth = depth + active.long()
            diverging = diverging | state.diverging
            turning = _is_turning(left.select(1, 3), right_edge.select(1, 3), left.select(1, 1),
                                  right_edge.select(1, 1), r_sum, self.half, self.zero)
            done = done | stopped | turning
        accept = sum_accept / n_steps.clamp(min=1).to(dtype)
        return z_prop, U_prop, g_prop, H0, accept, n_steps, diverging, depth

    def grow(self, state: LeafState, subtree: SubtreeConstants, log_u: torch.Tensor, leaves: int) -> LeafState:
        """A subtree of `leaves` leaves, leaf by leaf from `state` (fewer where every chain has stopped);
        `log_u` holds each leaf's log uniforms, ``(leaves, C)``."""
        for n in range(leaves):
            state = self.leaf(state, subtree, LeafInput(log_u=log_u[n], write=self.write_masks[n],
                                                        check=self.check_masks[n]))
            if not bool(state.active.any()):
                break
        return state


class FlatTreeBuilder(TreeBuilder):
    """`TreeBuilder` run as plain Python, each subtree grown by `Leaf.grow`: around a leaf compiled ahead of
    time (`compile.Packaged`), the per-leaf Python of the named state (some 40 microseconds, as much as the
    compiled step itself on the horseshoe) would otherwise be most of the cost."""

    def grow(self, state: LeafState, subtree: SubtreeConstants, log_u: torch.Tensor, leaves: int) -> LeafState:
        return self.leaf.grow(state, subtree, log_u, self.write_masks, self.check_masks, leaves)


class NUTSKernel:
    """One NUTS transition of every chain by `TreeBuilder`: TorchScript-compiled when `compile_tree`
    succeeds, plain Python otherwise."""

    def __init__(self, leaf: Leaf, max_tree_depth: int, C: int, D: int, dtype):
        self.leaf, self.max_tree_depth = leaf, max_tree_depth
        self.C, self.D, self.dtype = C, D, dtype
        self.python_tree = (FlatTreeBuilder if leaf.flat_runner() is not None else TreeBuilder)(
            leaf, max_tree_depth, C, D, dtype)
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
                scripted = compile_loop(TreeBuilder(self.leaf.compiled, self.max_tree_depth, self.C, self.D,
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
            self.why_not_scripted = one_line(exc, limit=120)
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
        want = Transition(*self.python_tree(*inputs))
        for _ in range(3):
            self.stream.manual_seed(seed)
            got = Transition(*scripted(*inputs))
            for name in Transition._fields:
                if not _same(getattr(got, name), getattr(want, name)):
                    self.why_not_scripted = f"the scripted tree's {name} differs from the Python tree's"
                    return False
        return True


# ---- HMC -------------------------------------------------------------------------------------------------
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
    H0 = U + kinetic_energy(r, metric.velocity(r))
    jitter = 0.5 + torch.rand(C, generator=generator, dtype=U.dtype)
    num_steps = (trajectory_length * jitter / step_size.squeeze(-1)).floor().clamp(min=1, max=10_000).long()
    zc, rc, Uc, gc = z, r, U, grad
    for k in range(int(num_steps.max())):
        moving = k < num_steps
        z1, r1, U1, g1 = integrator.step(zc, rc, gc, step_size)
        zc, rc, Uc, gc = where_chains(moving, z1, zc), where_chains(moving, r1, rc), torch.where(moving, U1, Uc), \
            where_chains(moving, g1, gc)
    dH = Uc + kinetic_energy(rc, metric.velocity(rc)) - H0
    dH = torch.where(torch.isnan(dH), torch.full_like(dH, math.inf), dH)
    accept_prob = torch.exp(-dH).clamp(max=1.0)
    accept = torch.rand(C, generator=generator, dtype=U.dtype) < accept_prob
    return Transition(z=where_chains(accept, zc, z), U=torch.where(accept, Uc, U), grad=where_chains(accept, gc, grad),
                      energy=H0, accept_prob=accept_prob, n_steps=num_steps, diverging=dH > MAX_DELTA_ENERGY)
