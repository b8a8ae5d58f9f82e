"""Shrink a recorded leapfrog-step graph before TorchScript runs it.

`batched_nuts.Leaf.compile` records one NUTS leaf step, the model's gradient included, with ``make_fx``
into a graph of some 150-250 ATen operations. On CPU at MCMC's tensor sizes an operation costs about
1.5 microseconds of dispatch whatever it computes, so the step's time is close to proportional to the
number of operations, and many of them compute nothing new on each call:

- Pyro's log densities rebuild the same constants on every call (``lgamma`` of a Beta's concentrations,
  ``expand`` of the data, ``arange`` of a plate's indices, the prior's normaliser),
- autograd's backward graph repeats forward work (``neg`` of the same node, the same ``unsqueeze``),
- tracing leaves no-op nodes behind (``detach``, ``alias``, ``lift_fresh_copy`` of constants, views to
  the shape a tensor already has) and nodes whose value nobody uses (log densities Pyro adds up for its
  trace but the potential does not need).

TorchScript's optimiser removes dead code but keeps the rest (it does not fold operations on module
constants, nor the copies ``lift_fresh_copy`` makes of them), so `simplify` does it here, on the FX graph:
constant folding (any node whose inputs are all constants is evaluated once), removal of no-op nodes,
common-subexpression elimination and dead-code elimination. Every pass keeps the graph's function: the
caller still compares the compiled step with the eager one on probe states before using it.
"""

from __future__ import annotations

import torch
import torch.fx as fx

__all__ = ["record", "simplify", "count_operations", "has_checks"]

aten = torch.ops.aten

# operations that return their input unchanged, strides included (not `clone`, which may make a tensor
# contiguous for a `view` that follows: factor analysis's graph needs it)
_NO_OPS = {aten.detach.default, aten.alias.default, aten.lift_fresh_copy.default}
# shape-only operations: a no-op when the result has the input's shape
_VIEWS = {aten.expand.default, aten.view.default, aten._unsafe_view.default, aten.reshape.default}


def record(function, *inputs) -> fx.GraphModule:
    """``make_fx(function)(*inputs)``: the ATen graph of a tensor function, autograd passes included.

    ``make_fx`` keeps a fake tensor of every intermediate as metadata and, outside a tracing context,
    builds a new `FakeTensorMode` (capturing a Python stack trace) for each one: 0.3-0.4 s of a 0.45 s
    recording of a Pyro model's leaf step. One shared mode gives the same graph in a quarter of the time.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    try:
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode
        context = tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True)))
    except ImportError:  # a torch without these internals: the plain (slower) recording
        import contextlib
        context = contextlib.nullcontext()
    with context:
        return make_fx(function)(*inputs)


def has_checks(graph_module: fx.GraphModule) -> bool:
    """Whether the graph holds operations that return nothing: checks that raise, such as a Cholesky
    factor's ``_linalg_check_errors``. ``torch.jit.trace`` drops them (nothing uses their output), so a
    traced graph would return a garbage density where the eager code raises; callers stay eager then."""
    return any(node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
               and not node.target._schema.returns for node in graph_module.graph.nodes)


def count_operations(graph_module: fx.GraphModule) -> int:
    return sum(node.op == "call_function" for node in graph_module.graph.nodes)


def _shape(node) -> tuple | None:
    value = node.meta.get("val", node.meta.get("tensor_meta")) if isinstance(node, fx.Node) else None
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


def _is_pure(node: fx.Node) -> bool:
    """A functional ATen op with no randomness and no in-place effect."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    schema = node.target._schema
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        return False
    name = schema.name
    return not any(word in name for word in ("rand", "normal", "bernoulli", "multinomial", "poisson",
                                             "exponential", "dropout", "uniform"))


def _users_mutate(node: fx.Node) -> bool:
    return any(not _is_pure(user) and user.op == "call_function" for user in node.users)


def _fold_constants(gm: fx.GraphModule) -> None:
    """Evaluate every node all of whose inputs are constants (module attributes or literals)."""
    values: dict[fx.Node, object] = {}
    count = 0
    for node in list(gm.graph.nodes):
        if node.op == "get_attr":
            values[node] = getattr(gm, node.target)
            continue
        if not _is_pure(node):
            continue
        inputs = node.all_input_nodes
        if not all(n in values for n in inputs):
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: values[n])
        try:
            result = node.target(*args, **kwargs)
        except Exception:
            continue
        values[node] = result
        if not isinstance(result, torch.Tensor) or _users_mutate(node) or not inputs:
            continue  # literals-only nodes (scalar_tensor, arange) are cheap to keep as they are
        name = f"_folded_{count}"
        count += 1
        gm.register_buffer(name, result.clone(memory_format=torch.contiguous_format)
                           if not result.is_contiguous() else result)
        with gm.graph.inserting_before(node):
            constant = gm.graph.get_attr(name)
        constant.meta = dict(node.meta)
        node.replace_all_uses_with(constant)
        values[constant] = getattr(gm, name)


def _drop_no_ops(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        if node.target in _NO_OPS and not _users_mutate(node) and not _users_mutate(source):
            node.replace_all_uses_with(source)
        elif node.target in _VIEWS:
            shape, before = _shape(node), _shape(source)
            if shape is not None and shape == before and not _users_mutate(node):
                node.replace_all_uses_with(source)


def _key(value):
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, fx.Node):
        return ("node", value.name)
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, repr(value))


def _eliminate_common_subexpressions(gm: fx.GraphModule) -> None:
    seen: dict[tuple, fx.Node] = {}
    for node in list(gm.graph.nodes):
        if not _is_pure(node) or _users_mutate(node):
            continue
        key = (str(node.target), _key(node.args), _key(sorted(node.kwargs.items())))
        if key in seen:
            node.replace_all_uses_with(seen[key])
        else:
            seen[key] = node


def _eliminate_dead_code(gm: fx.GraphModule) -> None:
    """Drop unused pure operations. Operations that return nothing are checks, kept: a Cholesky factor's
    ``_linalg_check_errors`` is what raises for a matrix that is not positive definite (dropping it let a
    compiled factor-analysis step return a garbage density instead of failing)."""
    for node in reversed(list(gm.graph.nodes)):
        if node.op == "call_function" and not node.users and _is_pure(node) and node.target._schema.returns:
            gm.graph.erase_node(node)


def simplify(gm: fx.GraphModule) -> fx.GraphModule:
    """Constant folding, no-op removal, CSE and DCE on a ``make_fx`` graph, in place; returns it."""
    for _ in range(3):  # each pass exposes work for the others
        _fold_constants(gm)
        _drop_no_ops(gm)
        _eliminate_common_subexpressions(gm)
        _eliminate_dead_code(gm)
    # buffers nobody reads any more
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name in [n for n, _ in gm.named_buffers() if n not in used]:
        delattr(gm, name)
    for name in [n for n in vars(gm) if n.startswith("_tensor_constant") and n not in used]:
        delattr(gm, name)
    gm.graph.lint()
    gm.recompile()
    return gm
