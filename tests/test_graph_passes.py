"""`inference.graph_passes.simplify`: the recorded graph shrinks and computes exactly what it did."""

from __future__ import annotations

import pytest
import torch

from inference.graph_passes import count_operations, has_checks, record, simplify

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
