"""`inference.graph_passes.simplify`: the recorded graph shrinks and computes exactly what it did."""

from __future__ import annotations

import math

import pytest
import torch

from inference.fast.graph_passes import checks_as_output, count_operations, has_checks, record, simplify

aten = torch.ops.aten


def _targets(gm) -> set:
    return {node.target for node in gm.graph.nodes if node.op == "call_function"}


def test_simplify_folds_constants_and_removes_repeats_without_changing_the_result():
    concentration = torch.tensor([2.0, 3.0])
    data = torch.arange(6.0).reshape(3, 2)

    def f(x):  # a Pyro-like log density: a normaliser of constants, the data expanded, repeated work
        normaliser = torch.lgamma(concentration).sum() - torch.lgamma(concentration.sum())
        y = data.expand(x.shape[0], 3, 2)
        a = (x.unsqueeze(1) * y).sum((-1, -2))
        b = (x.unsqueeze(1) * y).sum((-1, -2))  # the same again
        return a + b + normaliser + x.detach().sum(-1) + torch.zeros_like(x).sum(-1)

    x = torch.randn(4, 2)
    gm = record(f, x)
    before = count_operations(gm)
    simplify(gm)
    assert count_operations(gm) < before - 5, (before, count_operations(gm))
    assert aten.lgamma.default not in _targets(gm)      # the normaliser is a constant now
    assert aten.detach.default not in _targets(gm)
    for _ in range(3):
        x = torch.randn(4, 2)
        assert torch.allclose(gm(x), f(x))
    traced = torch.jit.trace(gm, (x,), check_trace=False)
    assert torch.allclose(traced(x), f(x))


def test_simplify_keeps_constants_that_the_graph_mutates():
    offset = torch.tensor([1.0, 2.0])

    def f(x):
        out = offset.clone()
        out.add_(x)               # an in-place update of a copy of a constant: the copy must stay
        return out * 2

    x = torch.randn(2)
    gm = simplify(record(f, x))
    first = gm(torch.ones(2))
    second = gm(torch.ones(2))
    assert torch.equal(first, second) and torch.equal(first, (offset + 1) * 2)
    assert torch.equal(offset, torch.tensor([1.0, 2.0]))


def test_simplify_keeps_values_written_to_through_a_view():
    """``capacitance.view(-1)[::n + 1] += 1`` (torch's low-rank normal, in the factor-analysis model): zeros
    written through a strided view of them. Neither the zeros nor what is read from them after the write
    are constants (folding them left a compiled step that did not reproduce the eager one, and a graph
    AOTInductor refuses: a constant written to in place)."""
    def f(x):
        m = x.new_zeros(3, 3)
        m.view(-1)[::4] += 1.0    # the identity, written through a view
        m2 = m + m                # read after the write
        return x @ m2

    gm = simplify(record(f, torch.randn(2, 3)))
    x = torch.randn(2, 3)
    assert torch.allclose(gm(x), 2 * x) and torch.allclose(gm(x), 2 * x)
    mutated = [n for n in gm.graph.nodes if n.op == "get_attr" and
               any(u.op == "call_function" and u.target._schema.is_mutable for u in n.users)]
    assert not mutated


def test_simplify_keeps_copies_that_make_a_tensor_contiguous():
    """`clone` can change strides: dropping it before a `view` broke factor analysis's leaf step."""

    def f(x):
        return x.t().contiguous().view(-1) * 2

    x = torch.randn(3, 4)
    gm = simplify(record(f, x))
    assert torch.equal(gm(x), f(x))
    traced = torch.jit.trace(gm, (x,), check_trace=False)
    assert torch.equal(traced(x), f(x))


def test_graphs_with_checks_that_raise_are_recognised():
    """A Cholesky factor's error check returns nothing and jit.trace drops it: the traced graph would not
    raise where eager code does, so `has_checks` must flag such graphs (the samplers then stay eager)."""

    def f(a):
        return torch.linalg.cholesky(a).sum()

    def g(a):
        return (a * 2).sum()

    gm = simplify(record(f, torch.eye(2)))
    assert has_checks(gm) and not has_checks(simplify(record(g, torch.eye(2))))
    with pytest.raises(Exception, match="positive-definite"):
        gm(-torch.eye(2))  # simplify keeps the check itself


def test_checks_become_a_failure_flag():
    """`checks_as_output`: the Cholesky check leaves the graph and comes back as one more output, true
    exactly where the check would have raised, in the traced graph too; without checks a constant False."""

    def f(a):
        return (torch.linalg.cholesky(a).diagonal(dim1=-2, dim2=-1).log().sum(-1),)

    gm = checks_as_output(simplify(record(f, torch.eye(2).expand(3, 2, 2).clone())))
    assert not has_checks(gm)
    traced = torch.jit.trace(gm, (torch.eye(2).expand(3, 2, 2).clone(),), check_trace=False)
    good = torch.tensor([[[2.0, 0.5], [0.5, 1.0]]] * 3)
    value, failed = traced(good)
    assert not bool(failed) and torch.allclose(value, f(good)[0])
    bad = good.clone()
    bad[1] = -bad[1]  # one matrix of the batch is not positive definite
    with pytest.raises(Exception, match="positive-definite"):
        f(bad)
    assert bool(traced(bad)[1])

    plain = checks_as_output(simplify(record(lambda a: ((a * 2).sum(),), torch.eye(2))))
    assert not bool(plain(-torch.eye(2))[1])


def test_numbers_read_from_the_data_are_recorded_as_constants():
    """A Python number taken from a tensor that depends on no input (a label check, a covariate's scale)
    is read while recording and becomes a constant; one taken from anything computed from an input is
    data-dependent control flow and still stops the recording."""
    y = torch.tensor([0.0, 1.0, 3.0])

    def f(x):
        if int(y.max()) >= 4:
            raise ValueError("label out of range")
        return (x - float(y.mean())) / float(y.std())

    gm = simplify(record(f, torch.zeros(2)))
    x = torch.tensor([1.0, -2.0])
    assert torch.allclose(gm(x), f(x))
    assert not any(n.op == "call_function" and "std" in str(n.target) for n in gm.graph.nodes)

    def g(x):
        return x * float(x.sum())

    with pytest.raises(Exception, match="data-dependent"):
        record(g, torch.ones(2))


def _gradient_graph(f, x):
    """The recorded graph of x -> (f(x), df/dx), as the NUTS leaf records a model's gradient."""
    def value_and_grad(x):
        x = x.detach().requires_grad_(True)
        value = f(x)
        return value.detach(), torch.autograd.grad(value.sum(), x)[0]
    return record(value_and_grad, x), value_and_grad


def test_simplify_folds_the_arithmetic_distributions_and_their_gradients_leave_behind():
    """``x * 1``, ``x ** 1``, chains of constant factors and offsets, negations of constant multiples,
    autograd's seed gradient: a Normal log density and its gradient, with the counts of what is left."""
    loc, scale = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 2.0, 0.5])

    def f(x):  # Normal(loc, scale).log_prob(x), written out as torch.distributions does, plus a constant chain
        log_prob = -((x - loc) ** 2) / (2 * scale ** 2) - scale.log() - 0.5 * math.log(2 * math.pi)
        return (log_prob * 1.0 + 0.0).sum(-1) * 2.0 * 3.0 - 1.0 - 2.0

    x = torch.randn(4, 3)
    gm, value_and_grad = _gradient_graph(f, x)
    before = count_operations(gm)
    simplify(gm)
    ops = [node.target for node in gm.graph.nodes if node.op == "call_function"]
    assert aten.ones_like.default not in ops and aten.neg.default not in ops
    assert not any(node.target is aten.pow.Tensor_Scalar and node.args[1] == 1 for node in gm.graph.nodes
                   if node.op == "call_function")
    assert count_operations(gm) <= before - 8, (before, count_operations(gm))
    for _ in range(3):
        x = torch.randn(4, 3)
        for got, want in zip(gm(x), value_and_grad(x)):
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_simplify_joins_chains_of_permutes_and_reshapes():
    """What vmap and Pyro's einsum leave between operations: a permute and its inverse vanish, a transpose
    after a permute becomes one permute, a view of a view of a contiguous tensor one view (torch records a
    reshape of a non-contiguous tensor as a copy and a view of the copy, which is contiguous); views of a
    non-contiguous tensor are left alone (the first may be what makes the second possible). The function
    is unchanged."""
    def f(x):                                            # x: (2, 3, 4)
        back = x.permute(2, 0, 1).permute(1, 2, 0)       # the identity
        turned = x.permute(1, 2, 0).transpose(0, 2)      # one permute
        flat = (x * 2.0).view(6, 4).view(24)             # one view
        copied = x.transpose(0, 1).reshape(3, 8).reshape(24)   # transpose, copy, one view
        strided = x.transpose(0, 1).view(3, 2, 2, 2).view(3, 2, 4)  # left as it is
        return (back * 3.0, turned.sin(), flat.exp(), copied.cos(), strided.tan())

    x = torch.randn(2, 3, 4)
    gm = record(f, x)
    shape_ops = (aten.permute.default, aten.transpose.int, aten.view.default, aten._unsafe_view.default,
                 aten.reshape.default, aten.clone.default)

    def counts(graph):
        return sum(node.op == "call_function" and node.target in shape_ops for node in graph.graph.nodes)

    before = counts(gm)
    simplify(gm)
    assert counts(gm) == before - 6, (before, counts(gm), gm.code)  # (5 folded, 1 repeated transpose by CSE)
    assert any(node.op == "call_function" and node.target is aten.view.default and list(node.args[1]) == [3, 2, 2, 2]
               for node in gm.graph.nodes), gm.code
    assert sum(node.op == "call_function" and node.target is aten.permute.default for node in gm.graph.nodes) == 1
    for _ in range(3):
        x = torch.randn(2, 3, 4)
        for got, want in zip(gm(x), f(x)):
            assert torch.equal(got, want)


def test_simplify_joins_the_gradients_of_slices_that_tile_a_tensor():
    """Pyro cuts the unconstrained vector into its sites with slices; their gradients, a sum of
    zero-padded pieces, become one `cat` (and only where the pieces tile the whole dimension)."""

    def f(z):
        return (z[:, 0:1].exp() * 2).sum(-1) + (z[:, 1:3] ** 2).sum(-1) + z[:, 3:4].sin().sum(-1)

    def g(z):  # the middle of the vector unused: its gradient is zero, no tiling
        return z[:, 0:1].exp().sum(-1) + z[:, 3:4].sin().sum(-1)

    z = torch.randn(4, 4)
    for function, joined in ((f, True), (g, False)):
        gm, value_and_grad = _gradient_graph(function, z)
        simplify(gm)
        ops = [node.target for node in gm.graph.nodes if node.op == "call_function"]
        assert (aten.slice_backward.default not in ops) == joined
        for _ in range(3):
            z = torch.randn(4, 4)
            for got, want in zip(gm(z), value_and_grad(z)):
                assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
        traced = torch.jit.trace(gm, (z,), check_trace=False)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(traced(z), value_and_grad(z)))


def test_simplify_keeps_arithmetic_on_values_the_graph_mutates():
    def f(x):
        y = x * 1.0          # a copy that is then updated in place: folding it into x would update x
        y.add_(1.0)
        return (x * 2.0) * 3.0 + y

    x = torch.randn(3)
    gm = simplify(record(f, x))
    for _ in range(2):
        x = torch.randn(3)
        assert torch.allclose(gm(x.clone()), f(x.clone()))


def _number_operands(gm) -> list:
    """The nodes that still take a Python number as an operand of arithmetic or a comparison."""
    kinds = {aten.mul, aten.div, aten.add, aten.sub, aten.rsub, aten.lt, aten.le, aten.gt, aten.ge, aten.eq,
             aten.ne, aten.pow, aten.where}
    return [node for node in gm.graph.nodes if node.op == "call_function"
            and getattr(node.target, "overloadpacket", None) in kinds
            and any(isinstance(a, (int, float)) and not isinstance(a, bool) for a in node.args)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_number_operands_become_constants_of_the_operands_dtype(dtype):
    """``x * 0.5``, ``1 - x``, ``x <= 0``, ``where(m, x, 2)``, ``x ** 2`` take a 0-dim tensor of x's dtype
    (ATen would convert the number on every call); the values, their dtype and the gradient stay."""
    def f(x):
        y = 0.5 * x + 1.0 - (1.0 - x) / 3.0
        y = torch.where(x <= 0, y, 2.0) + (x > 0.25) * x ** 2.0
        return y.sum(-1)

    def value_and_grad(x):
        x = x.detach().requires_grad_(True)
        value = f(x)
        return value.detach(), torch.autograd.grad(value.sum(), x)[0]

    x = torch.randn(4, 3, dtype=dtype)
    plain = record(value_and_grad, x)
    assert _number_operands(plain)          # make_fx records the numbers as numbers
    gm = simplify(record(value_and_grad, x))
    assert not _number_operands(gm), [n.format_node() for n in _number_operands(gm)]
    traced = torch.jit.trace(gm, (x,), check_trace=False)
    for _ in range(3):
        x = torch.randn(4, 3, dtype=dtype)
        for got in (gm(x), traced(x)):
            for a, b in zip(got, value_and_grad(x)):
                assert a.dtype == b.dtype and torch.allclose(a, b), (a, b)


def test_number_operands_of_integer_tensors_are_left_where_the_dtype_would_change():
    def f(n):
        return n * 0.5, n + 1, n < 2  # a long times a float is a float: the number must stay a number

    n = torch.arange(4)
    gm = simplify(record(f, n))
    half, plus_one, small = gm(n)
    assert half.dtype == torch.float32 and torch.equal(half, n * 0.5)
    assert plus_one.dtype == torch.long and torch.equal(plus_one, n + 1)
    assert torch.equal(small, n < 2)
    assert any(node.target in (aten.mul.Tensor, aten.mul.Scalar) and 0.5 in node.args
               for node in gm.graph.nodes)


def test_recording_keeps_shapes_and_dtypes_as_metadata_and_restores_make_fx():
    from torch.fx.experimental import proxy_tensor

    extract_val = proxy_tensor.extract_val
    gm = record(lambda x: (x.double() * 2).sum(0), torch.randn(3, 2))
    assert proxy_tensor.extract_val is extract_val
    values = [n.meta["val"] for n in gm.graph.nodes if n.op == "call_function"]
    assert [tuple(v.shape) for v in values] == [(3, 2), (3, 2), (2,)]
    assert [v.dtype for v in values] == [torch.float64] * 3
