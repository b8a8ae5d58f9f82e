"""The named state of the batched NUTS tree: what a leaf step reads and returns, and what a transition gives.

A subtree is built leaf by leaf (`tree.Leaf`); each leaf step reads three tuples and returns a new
`LeafState`:

- `LeafState`: what the subtree carries from leaf to leaf, its edge (the last leaf's position, momentum,
  gradient and velocity), its running sums (log weight, proposal, momentum sum, divergence, U-turn,
  acceptance, step count), which chains are still active, and the momentum checkpoints its U-turn checks
  compare against;
- `SubtreeConstants`: what stays fixed while a subtree grows (the signed step size, the inverse mass
  matrix, the Hamiltonian at the start of the transition);
- `LeafInput`: what changes from leaf to leaf without being state (the leaf's log uniform for the
  multinomial proposal, and which checkpoints it writes and is checked against).

Every field is a tensor with the chains as its leading dimension (``C`` chains, ``D`` unconstrained
dimensions, ``K`` checkpoints), except the step size's ``(C, 1)`` and the ``(K,)`` checkpoint masks, which
are the same for every chain (all chains walk in lock-step). The classes are ``typing.NamedTuple``s
defined at module level, so that the TorchScript-compiled tree (`tree.TreeBuilder`) can build and read
them; annotations are kept as real types (no postponed evaluation) for TorchScript to resolve.
"""

from typing import NamedTuple, Optional

from torch import Tensor

__all__ = ["LeafState", "SubtreeConstants", "LeafInput", "Transition"]


class LeafState(NamedTuple):
    """The state of a subtree of every chain, as one leaf step advances it."""

    z: Tensor            # (C, D) the subtree's edge: position ...
    r: Tensor            # (C, D) ... momentum ...
    g: Tensor            # (C, D) ... gradient of the potential ...
    v: Tensor            # (C, D) ... and velocity (inverse mass times momentum)
    log_w: Tensor        # (C,) the subtree's log weight, log sum of exp(H0 - H) over its leaves
    s_z: Tensor          # (C, D) the subtree's proposal (multinomial sampling over its leaves): position ...
    s_U: Tensor          # (C,) ... potential energy ...
    s_g: Tensor          # (C, D) ... and gradient
    r_sum: Tensor        # (C, D) the sum of the subtree's momenta
    diverging: Tensor    # (C,) bool: a leaf's energy error exceeded `tree.MAX_DELTA_ENERGY`
    turning: Tensor      # (C,) bool: a sub-subtree made a U-turn
    sum_accept: Tensor   # (C,) the transition's running sum of min(1, exp(H0 - H)) over its leaves
    n_steps: Tensor      # (C,) long: the transition's leapfrog steps so far
    active: Tensor       # (C,) bool: the chain's subtree is still growing (not turned, not diverged)
    ck_r: Tensor         # (C, K, D) momentum checkpoints: momentum at a leaf ...
    ck_v: Tensor         # (C, K, D) ... its velocity ...
    ck_sum: Tensor       # (C, K, D) ... and the momentum sum up to it


class SubtreeConstants(NamedTuple):
    """What a leaf step reads that stays fixed while a subtree grows."""

    step: Tensor          # (C, 1) the step size, negative where the subtree grows to the left
    inverse_mass: Tensor  # (C, D) diagonal or (C, D, D) dense
    H0: Tensor            # (C,) the Hamiltonian at the start of the transition (NaN replaced by +inf)


class LeafInput(NamedTuple):
    """What a leaf step reads that differs from leaf to leaf without being state."""

    log_u: Tensor  # (C,) log of a uniform: whether the leaf becomes the subtree's proposal
    write: Tensor  # (K,) bool: the checkpoint this leaf stores (even leaves)
    check: Tensor  # (K,) bool: the checkpoints this leaf is checked against for U-turns (odd leaves)


class Transition(NamedTuple):
    """One NUTS or HMC transition of every chain."""

    z: Tensor                           # (C, D) the new position
    U: Tensor                           # (C,) its potential energy
    grad: Tensor                        # (C, D) its gradient
    energy: Tensor                      # (C,) the Hamiltonian at the start of the transition
    accept_prob: Tensor                 # (C,) mean Metropolis acceptance over the trajectory (what adaptation uses)
    n_steps: Tensor                     # (C,) long: leapfrog steps taken
    diverging: Tensor                   # (C,) bool
    tree_depth: Optional[Tensor] = None  # (C,) long: NUTS only
