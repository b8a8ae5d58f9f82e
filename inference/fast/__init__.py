"""The fast MCMC backend, sealed: every chain of NUTS or HMC advanced as one batch on a compiled potential.

The rest of the suite calls `run_fast_mcmc` (and reads the names below; `leaf_step_graph` and
`compile_graph` let a benchmark compile the NUTS leaf step itself); nothing outside this package uses its
modules' private names. Inside, one job per module:

- `potential`: the model's potential energy and gradient at a batch of flat unconstrained points, the
  chain dimension added by vectorising one chain's recorded potential (or, where it is measured faster, by
  an outer chain plate);
- `graph_passes`: recording a tensor function into an FX graph, and shrinking that graph;
- `compile`: the one seam through which graphs and the doubling loop are compiled (TorchScript,
  AOTInductor or plain Python), and when AOTInductor pays;
- `package_cache`: the AOTInductor packages on disk, one per model and data;
- `state`: the named tuples a NUTS leaf step reads and returns, and a transition's result;
- `tree`: the batched integrator, the NUTS leaf step and tree, the HMC transition;
- `adaptation`: the warm-up's step-size search, dual averaging and windowed mass-matrix estimates;
- `sampler`: the sampling loop, warm-up and draws;
- `driver`: starting points, the warm start, the metric choice, and the run itself.
"""

from .compile import AOT_INDUCTOR_CONFIGS, COMPILERS, compile_graph
from .driver import (ADAPTATIONS, AHEAD_OF_TIME_JUDGEMENTS, DENSE_MAX_DIM, DENSE_MIN_CONDITION, Judgement,
                     NoStartingPoint, NotBatchable, leaf_step_graph, one_thread, run_fast_mcmc)
from .graph_passes import record
from .potential import BATCHINGS, Potential

__all__ = ["run_fast_mcmc", "NotBatchable", "NoStartingPoint", "one_thread", "Potential", "BATCHINGS", "COMPILERS",
           "ADAPTATIONS", "AHEAD_OF_TIME_JUDGEMENTS", "Judgement", "DENSE_MAX_DIM", "DENSE_MIN_CONDITION", "record",
           "leaf_step_graph", "compile_graph", "AOT_INDUCTOR_CONFIGS"]
